"""Reusable segment-sized buffers, handed out again only once nothing refers to them.

Encoding a 1 MiB segment used to allocate its parity afresh: a megabyte of
page faults and zero-filling per segment, about as long as ISA-L takes to
compute it. A pool keeps a few buffers of one size and hands one out only
when its reference count says no one holds it: not the thread that took
it, and no memoryview over it (a view keeps its bytearray alive, so a block
still queued for a holder keeps its buffer out of the pool). A caller
therefore never has to give a buffer back, and a buffer is never reused
while a segment's blocks are still in use: when all are busy, a fresh one
is made (kept if the pool has room), so memory follows what is really held.

The check relies on CPython's reference counts, as the rest of the codec
relies on CPython's buffer protocol.
"""

from __future__ import annotations

import sys
import threading


def _idle_references() -> int:
    """What getrefcount says of a buffer only a list holds, measured as `take` measures
    it (2 on CPython 3.11: the list and the argument; later versions may borrow)."""
    held = [bytearray(1)]
    return sys.getrefcount(held[0])


_IDLE_REFERENCES = _idle_references()


class BufferPool:
    """Buffers of `size` bytes; at most `keep` are kept for reuse."""

    def __init__(self, size: int, keep: int = 4) -> None:
        if size < 0 or keep < 0:
            raise ValueError(f"size and keep must be >= 0, got {size} and {keep}")
        self.size = size
        self.keep = keep
        self._buffers: list[bytearray] = []
        self._lock = threading.Lock()
        self.made = 0  # buffers allocated, for tests and measurements

    def take(self) -> bytearray:
        """A buffer of `size` bytes that nothing else refers to (old contents, not zeroed)."""
        with self._lock:
            for i in range(len(self._buffers)):
                if sys.getrefcount(self._buffers[i]) == _IDLE_REFERENCES:
                    return self._buffers[i]
            buffer = bytearray(self.size)
            self.made += 1
            if len(self._buffers) < self.keep:
                self._buffers.append(buffer)
            return buffer

    def __len__(self) -> int:
        return len(self._buffers)
