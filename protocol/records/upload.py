"""Cutting an upload's chunks into segments, sans-IO, whatever sizes the client sends.

A full segment is held back until more data (or the end) arrives: only then
is it known whether it is the last one, and the last segment's flag is
bound into its encryption. A chunk that is exactly one segment (as the CLI
sends them) passes through without a copy.

Small chunks are gathered into pieces of COALESCE bytes (or a segment) as they
arrive: a client that sends a body a few bytes at a time (HTTP lets it) would
otherwise make the node keep a Python object per few bytes, about twenty
times the segment's size, and join a view of each.
"""

from __future__ import annotations

import collections

COALESCE = 64 * 1024  # chunks smaller than this are gathered before they are queued


class Pieces:
    """A queue of byte strings read from the front in arbitrary lengths.

    Chunks shorter than `coalesce` are gathered into one piece of at least that.
    """

    def __init__(self, coalesce: int = COALESCE) -> None:
        self.coalesce = coalesce
        self._queue: collections.deque[bytes] = collections.deque()
        self._offset = 0  # bytes of the first piece already taken
        self._small = bytearray()  # small chunks not yet queued, in order after the queue
        self.size = 0

    def add(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if len(data) >= self.coalesce:
            self._flush()
            self._queue.append(data)
        else:
            self._small += data
            if len(self._small) >= self.coalesce:
                self._flush()

    def _flush(self) -> None:
        if self._small:
            self._queue.append(bytes(self._small))
            self._small = bytearray()

    def take(self, count: int) -> bytes:
        """The next `count` bytes (a queued piece itself when it is exactly that).

        Otherwise the bytes are copied once: views of the pieces joined into one
        allocation (growing a bytearray and freezing it took 67 ms per 64 MiB of
        64 KiB chunks, the join 5 ms: benchmarks.http's put is CPU-bound).
        """
        self._flush()
        if self._queue and self._offset == 0 and len(self._queue[0]) == count:
            self.size -= count
            return self._queue.popleft()
        parts: list[memoryview] = []
        wanted = count
        while wanted:
            piece = memoryview(self._queue[0])[self._offset :]
            parts.append(piece[:wanted])
            if len(piece) <= wanted:
                self._queue.popleft()
                self._offset = 0
                wanted -= len(piece)
            else:
                self._offset += wanted
                wanted = 0
        self.size -= count
        return b"".join(parts)


class UploadSegments:
    """Chunks in, (segment, last) out; every segment but the last is `size` bytes."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a segment is at least one byte")
        self.size = size
        self.finished = False
        self._pieces = Pieces(min(COALESCE, size))  # a chunk of one segment is never copied

    @property
    def buffered(self) -> int:
        return self._pieces.size

    def add(self, data: bytes, last: bool) -> list[tuple[bytes, bool]]:
        """The segments complete once `data` is added (all that is left when `last`)."""
        if self.finished:
            raise ValueError("the upload already ended")
        pieces = self._pieces
        pieces.add(data)
        out = []
        while pieces.size > self.size:
            out.append((pieces.take(self.size), False))
        if last:
            out.append((pieces.take(pieces.size), True))
            self.finished = True
        return out
