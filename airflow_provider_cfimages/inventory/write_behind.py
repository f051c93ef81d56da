"""A stream that does its writing on a thread of its own, a page or two behind the caller.

An export's main thread fetches and decodes a page, then encodes it; compressing, hashing
and storing those bytes is the other half of its work. ISA-L's deflate, hashlib and file
or socket writes all release the GIL, so on a second core they overlap the next page's
fetch and decode instead of following it.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

#: Chunks waiting for the thread: enough to keep it busy, few enough to keep memory flat.
QUEUE_DEPTH = 2


class BinaryWriter(Protocol):
    """What :class:`WriteBehind` writes to (a file, a ``GzipFile``, a hashing sink)."""

    def write(self, data: bytes, /) -> int: ...


class WriteBehind:
    """Writes chunks to ``stream`` on a background thread, in order.

    :meth:`write` returns once the chunk is queued (waiting only while the queue is full);
    :meth:`finish` waits until everything is written. An error in the thread is raised
    by the next :meth:`write` or by :meth:`finish`, so a failed write is never silent; after
    it, queued chunks are dropped rather than written past the hole.

    :param stream: where the chunks go; only the background thread touches it.
    :param name: the thread's name, for debugging.
    """

    def __init__(self, stream: BinaryWriter, *, name: str = "cfimages-write-behind") -> None:
        self._stream = stream
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._dropping = False
        # A daemon, so a task killed mid-export is never kept alive waiting for it.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        """Queue ``data`` to be written; raise the background thread's error, if any.

        :param data: the next chunk; it must not be changed afterwards.
        """
        self._raise_failure()
        if not self._thread.is_alive():
            raise ValueError("write to a WriteBehind that was finished or abandoned")
        self._queue.put(data)
        return len(data)

    def finish(self) -> None:
        """Wait until every queued chunk is written; raise the thread's error, if any."""
        self._stop()
        self._raise_failure()

    def abandon(self) -> None:
        """Drop what is still queued and stop the thread (the output is being thrown away)."""
        self._dropping = True
        self._stop()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            # After a failure (or an abandon) keep draining, so a writer blocked on a full
            # queue always gets its turn to see the error.
            if self._error is not None or self._dropping:
                continue
            try:
                self._stream.write(data)
            except BaseException as err:  # handed to the caller's thread, raised there
                self._error = err
