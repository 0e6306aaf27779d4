"""run_stages: order kept with several workers, failures raised as themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator

import pytest
import trio

from node.records.stages import run_stages


async def numbers(count: int) -> AsyncIterator[int]:
    for number in range(count):
        yield number


def slow_square(number: int) -> int:
    time.sleep(0.002 * (number % 3))  # later items often finish first
    return number * number


@pytest.mark.parametrize("workers", [1, 2, 4])
async def test_results_arrive_in_source_order(workers: int) -> None:
    got: list[int] = []

    async def deliver(value: int) -> None:
        got.append(value)

    await run_stages(numbers(30), slow_square, deliver, workers=workers)
    assert got == [n * n for n in range(30)]


async def test_at_most_workers_items_are_worked_on_at_once() -> None:

    lock = threading.Lock()
    active = peak = 0

    def work(number: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.003)
        with lock:
            active -= 1
        return number

    async def deliver(value: int) -> None:
        pass

    await run_stages(numbers(20), work, deliver, workers=2)
    assert peak == 2


async def test_a_failing_stage_raises_its_own_exception() -> None:
    def work(number: int) -> int:
        if number == 5:
            raise ValueError("bad item 5")
        return number

    delivered: list[int] = []

    async def deliver(value: int) -> None:
        delivered.append(value)

    with pytest.raises(ValueError, match="bad item 5"):
        await run_stages(numbers(10), work, deliver, workers=2)
    assert delivered == list(range(len(delivered))) and 5 not in delivered

    async def broken_source() -> AsyncIterator[int]:
        yield 1
        raise LookupError("source broke")

    with pytest.raises(LookupError, match="source broke"):
        await run_stages(broken_source(), work, deliver)

    async def refusing(value: int) -> None:
        raise KeyError("deliver refused")

    with pytest.raises(KeyError, match="deliver refused"):
        await run_stages(numbers(10), work, refusing)


async def test_cancellation_is_not_swallowed() -> None:
    async def deliver(value: int) -> None:
        await trio.sleep_forever()

    with trio.move_on_after(1) as scope:
        await run_stages(numbers(3), slow_square, deliver)
    assert scope.cancelled_caught


async def test_cancelled_mid_stream_no_work_is_left_running_in_a_thread() -> None:
    lock = threading.Lock()
    active = started = 0
    release = threading.Event()
    both_working = trio.Event()

    def work(number: int) -> int:
        nonlocal active, started
        with lock:
            active += 1
            started += 1
            both = started == 2
        if both:
            trio.from_thread.run_sync(both_working.set)
        try:
            release.wait(30)  # held in the thread until the test lets it go
            return number
        finally:
            with lock:
                active -= 1

    async def deliver(value: int) -> None:
        pass

    async def stop_when_both_threads_work(scope: trio.CancelScope) -> None:
        await both_working.wait()
        scope.cancel()
        await trio.to_thread.run_sync(release.set)

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(stop_when_both_threads_work, scope)
            await run_stages(numbers(100), work, deliver, workers=2)
    assert scope.cancelled_caught
    assert active == 0  # the cancelled stage waited for its threads' work
    assert started == 2  # and started nothing after the cancellation
