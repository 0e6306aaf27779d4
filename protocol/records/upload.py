"""Cutting an upload's chunks into segments, sans-IO, whatever sizes the client sends.

A full segment is held back until more data (or the end) arrives: only then
is it known whether it is the last one, and the last segment's flag is
bound into its encryption. A chunk that is exactly one segment (as the CLI
sends them) passes through without a copy.
"""

from __future__ import annotations

import collections


class Pieces:
    """A queue of byte strings read from the front in arbitrary lengths."""

    def __init__(self) -> None:
        self._queue: collections.deque[bytes] = collections.deque()
        self._offset = 0  # bytes of the first piece already taken
        self.size = 0

    def add(self, data: bytes) -> None:
        if data:
            self._queue.append(data)
            self.size += len(data)

    def take(self, count: int) -> bytes:
        """The next `count` bytes (a queued piece itself when it is exactly that)."""
        if self._queue and self._offset == 0 and len(self._queue[0]) == count:
            self.size -= count
            return self._queue.popleft()
        out = bytearray()
        while len(out) < count:
            piece = memoryview(self._queue[0])[self._offset :]
            wanted = count - len(out)
            out += piece[:wanted]
            if len(piece) <= wanted:
                self._queue.popleft()
                self._offset = 0
            else:
                self._offset += wanted
        self.size -= count
        return bytes(out)


class UploadSegments:
    """Chunks in, (segment, last) out; every segment but the last is `size` bytes."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a segment is at least one byte")
        self.size = size
        self.finished = False
        self._pieces = Pieces()

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
