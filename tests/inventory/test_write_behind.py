"""WriteBehind: chunks written in order on a thread, failures raised in the caller's."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_cfimages.inventory.write_behind import WriteBehind


class ListSink:
    def __init__(self, fail_at: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def write(self, data: bytes) -> int:
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and len(self.chunks) == self.fail_at:
            raise OSError(28, "No space left on device")
        self.chunks.append(data)
        return len(data)


class GatedSink(ListSink):
    """Holds each write until the test lets it through."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Semaphore(0)
        self.entered = threading.Event()

    def write(self, data: bytes) -> int:
        self.entered.set()
        self.gate.acquire()
        return super().write(data)


def test_chunks_arrive_in_order_on_the_background_thread() -> None:
    sink = ListSink()
    behind = WriteBehind(sink, name="test-writer")
    chunks = [str(i).encode() for i in range(5000)]
    for chunk in chunks:
        assert behind.write(chunk) == len(chunk)
    behind.finish()
    assert sink.chunks == chunks
    assert sink.threads == {"test-writer"}


def test_a_failed_write_is_raised_by_the_next_write_and_nothing_after_it_is_written() -> None:
    sink = ListSink(fail_at=3)
    behind = WriteBehind(sink)

    def write_until_it_fails() -> None:
        for i in range(10_000):  # the queue is short, so the error surfaces long before
            behind.write(b"%d" % i)

    with pytest.raises(OSError, match="No space left"):
        write_until_it_fails()
    with pytest.raises(OSError, match="No space left"):
        behind.finish()
    assert sink.chunks == [b"0", b"1", b"2"]


def test_a_failure_in_the_last_chunks_is_raised_by_finish() -> None:
    sink = ListSink(fail_at=1)
    behind = WriteBehind(sink)
    behind.write(b"a")
    behind.write(b"b")
    with pytest.raises(OSError, match="No space left"):
        behind.finish()


def test_the_writer_waits_when_the_thread_is_behind() -> None:
    # Memory stays bounded: the caller blocks once QUEUE_DEPTH chunks are waiting.
    sink = GatedSink()
    behind = WriteBehind(sink)
    wrote = threading.Event()

    def write_many() -> None:
        for i in range(10):
            behind.write(b"%d" % i)
        wrote.set()

    writer = threading.Thread(target=write_many)
    writer.start()
    assert not wrote.wait(0.3)
    for _ in range(10):
        sink.gate.release()
    assert wrote.wait(5)
    writer.join()
    behind.finish()
    assert sink.chunks == [b"%d" % i for i in range(10)]


def test_abandon_drops_what_is_queued_and_refuses_more() -> None:
    sink = GatedSink()
    behind = WriteBehind(sink)
    behind.write(b"first")
    assert sink.entered.wait(5)  # "first" is in the thread's hands, held at the gate
    behind.write(b"queued")
    # Open the gate only once abandon() has begun: "first" is already in hand and gets
    # written, "queued" must then be dropped.
    opener = threading.Timer(0.2, lambda: [sink.gate.release() for _ in range(2)])
    opener.start()
    behind.abandon()
    opener.join()
    assert sink.chunks == [b"first"]
    with pytest.raises(ValueError, match="finished or abandoned"):
        behind.write(b"late")


def test_write_after_finish_is_an_error() -> None:
    behind = WriteBehind(ListSink())
    behind.finish()
    with pytest.raises(ValueError, match="finished or abandoned"):
        behind.write(b"late")
