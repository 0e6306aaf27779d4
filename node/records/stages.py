"""A three-stage pipeline: read, work in a thread, deliver, all at once.

Moving a record is read-bound, CPU-bound and send-bound in turn; run one
after another per segment, each waits for the others. Here the next item is
read while the current one is worked on (in a worker thread, off the trio
thread) and the previous one delivered, with at most `depth` items waiting
between stages, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar, cast

import trio

from node.offload import in_worker

T = TypeVar("T")
R = TypeVar("R")


async def run_stages(
    source: AsyncIterator[T],
    work: Callable[[T], R],
    deliver: Callable[[R], Awaitable[None]],
    *,
    depth: int = 2,
    workers: int = 1,
) -> None:
    """Every item of `source`, through `work` (in threads), into `deliver`, in order.

    Up to `workers` items are worked on at once (`work` must then be
    thread-safe); results are still delivered in the source's order. A
    failure in any stage stops the others and is raised as itself (not
    wrapped in an exception group) when it is the only one.
    """
    to_work, inputs = trio.open_memory_channel[T](depth)
    to_deliver, outputs = trio.open_memory_channel[_Slot[R]](depth)
    slots = trio.Semaphore(workers)

    async def read() -> None:
        async with to_work:
            async for item in source:
                await to_work.send(item)

    async def compute(item: T, slot: _Slot[R]) -> None:
        try:
            slot.value = await in_worker(work, item)
        finally:
            slots.release()
        slot.ready.set()

    async def process() -> None:
        async with inputs, to_deliver, trio.open_nursery() as pool:
            async for item in inputs:
                await slots.acquire()
                slot = _Slot[R]()
                pool.start_soon(compute, item, slot)
                await to_deliver.send(slot)

    with single_failure():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(process)
            async with outputs:
                async for slot in outputs:
                    await slot.ready.wait()
                    await deliver(slot.result())


@contextmanager
def single_failure() -> Iterator[None]:
    """Around a nursery: its one failure raised as itself, not in an exception group
    (a cancellation, or several failures, stay as they are)."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
            raise leaves[0] from None
        raise


class _Slot(Generic[R]):
    """A result to come, delivered in the order its work was started."""

    def __init__(self) -> None:
        self.ready = trio.Event()
        self.value: R | None = None

    def result(self) -> R:
        return cast(R, self.value)  # set before `ready`


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found
