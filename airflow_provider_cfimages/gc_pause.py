"""Pausing Python's cyclic garbage collector around bulk decoding."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Set once objects frozen by someone else are seen (Airflow's executors freeze the heap
# before forking workers); from then on young objects are left to the collector.
_others_froze = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a bulk job makes millions of small objects.

    A listing decodes each page into tens of thousands of dicts and lists, and the
    reconcile engine makes millions of small tuples; every burst of allocations makes the
    collector walk all the objects the task process holds (Airflow's own included).
    Measured: it more than halved the listing rate at 1,000,000 images and tripled the
    reconcile time at 1M keys. Those objects hold no reference cycles, so reference
    counting alone frees them and memory stays bounded.

    The collector is switched back on (if it was on) at the end, after the objects made
    meanwhile are moved to the oldest generation (see :func:`_promote_young_objects`).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            _promote_young_objects()
            gc.enable()


def _promote_young_objects() -> None:
    """Move every tracked object to the oldest generation without scanning any of them.

    A page just decoded is still in use when the collector comes back on, so the next young
    collection would walk all of its objects only to keep them, and keep promoting them
    until full collections walk the whole process: 20% of a listing at 1,000 images per
    page, 33% at 10,000 (measured). ``gc.freeze()`` then ``gc.unfreeze()`` moves them in
    constant time (two list splices); reference counting still frees them as usual, and
    full collections still see them. Skipped when someone else froze objects, since
    ``unfreeze`` would release theirs too.
    """
    global _others_froze
    if _others_froze:
        return
    if gc.get_freeze_count():
        _others_froze = True
        return
    gc.freeze()
    gc.unfreeze()
