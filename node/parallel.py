"""An ordered map over worker threads with a bounded window, for synchronous callers.

The heavy codec steps (libsodium through cffi, hashlib's BLAKE2b on large
buffers, numpy's kernels) release the GIL, so two threads keep both cores
busy. At most `window` items are submitted and not yet handed back, so the
bytes in flight stay at `window` items' worth however long the input is,
and results come back in the input's order. (The daemon's trio pipeline is
node.records.stages; this is its counterpart for benchmarks and tools.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    pool: ThreadPoolExecutor | None,
    window: int,
) -> Generator[R, None, None]:
    """`fn` of every item, in order, computed on `pool` (inline when None).

    The next item is taken from `items` only when fewer than `window` are in
    flight, so `items` may be a lazy stream. Closing the iterator early (or an
    exception in `fn`, raised at that item's turn) cancels what has not
    started and waits for what has: no work outlives the iterator.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    source = iter(items)
    try:
        while True:
            while len(pending) < window:
                item = next(source, _END)
                if item is _END:
                    break
                pending.append(pool.submit(fn, item))  # type: ignore[arg-type]
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()  # wait; its failure (if any) is not ours to raise now


_END = object()
