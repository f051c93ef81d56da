"""paused_gc: the collector is off inside, back on after, and nothing is lost to it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from airflow_provider_cfimages import gc_pause
from airflow_provider_cfimages.gc_pause import paused_gc


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def collector_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(gc_pause, "_others_froze", False)
    # Start with nothing frozen: code that ran earlier in this process may have frozen the
    # heap (seen on Python 3.12), and paused_gc then rightly leaves young objects alone.
    gc.unfreeze()
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def in_generation(obj: object, generation: int) -> bool:
    return any(candidate is obj for candidate in gc.get_objects(generation=generation))


def test_the_collector_is_off_inside_and_on_after_even_on_error() -> None:
    seen_inside = []

    def fail_inside() -> None:
        with paused_gc():
            seen_inside.append(gc.isenabled())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_inside()
    assert seen_inside == [False]
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_objects_made_inside_end_in_the_oldest_generation_unscanned() -> None:
    with paused_gc():
        page = [{"id": str(i), "meta": {"n": i}} for i in range(1000)]
    assert in_generation(page, 2)
    assert not in_generation(page, 0)
    assert gc.get_count()[0] < 100  # no young collection is pending for the page


def test_cyclic_garbage_made_inside_is_still_collected() -> None:
    with paused_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
    assert alive() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert alive() is None


def is_frozen(obj: object) -> bool:
    return gc.is_tracked(obj) and not any(in_generation(obj, g) for g in range(3))


def test_objects_someone_else_froze_stay_frozen() -> None:
    theirs = [Node()]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert is_frozen(theirs)
        for _ in range(2):
            with paused_gc():
                page = [{} for _ in range(100)]
        assert is_frozen(theirs)
        # Never more: only gc.freeze() adds to the count. It may be less, because other
        # threads of the test process can free frozen objects meanwhile.
        assert gc.get_freeze_count() <= frozen
        assert not is_frozen(page)
        assert not in_generation(page, 2)  # left to the collector as usual
    finally:
        gc.unfreeze()
