"""node.parallel.ordered_map: order kept, window respected, nothing left running."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from node.parallel import ordered_map
from storage.codec.encoder import RecordEncoder, SegmentJob
from storage.codec.segment import EncodedSegment

KEY, RID = b"K" * 32, b"I" * 32


class Gate:
    """Items whose work waits for a per-item event: lets a test finish them out of order."""

    def __init__(self, count: int) -> None:
        self.events = [threading.Event() for _ in range(count)]
        self.taken = 0  # items pulled from the source so far
        self.live = 0  # submitted and not yet handed back by the consumer
        self.peak = 0
        self.lock = threading.Lock()

    def source(self) -> Iterator[int]:
        for i in range(len(self.events)):
            with self.lock:
                self.taken += 1
                self.live += 1
                self.peak = max(self.peak, self.live)
            yield i

    def work(self, i: int) -> int:
        assert self.events[i].wait(30), f"item {i} was never released"
        return i * i

    def handed_back(self) -> None:
        with self.lock:
            self.live -= 1


def test_results_come_in_order_when_later_items_finish_first() -> None:
    gate = Gate(6)
    with ThreadPoolExecutor(2) as pool:
        results = ordered_map(gate.work, gate.source(), pool=pool, window=3)
        for i in reversed(range(6)):  # the last of each window finishes first
            gate.events[i].set()
        got = []
        for value in results:
            got.append(value)
            gate.handed_back()
    assert got == [i * i for i in range(6)]


def test_no_more_than_window_items_are_taken_ahead_of_the_consumer() -> None:
    gate = Gate(50)
    for event in gate.events:
        event.set()
    with ThreadPoolExecutor(2) as pool:
        results = ordered_map(gate.work, gate.source(), pool=pool, window=3)
        assert next(results) == 0
        # The consumer holds item 0; at most two more were taken so far.
        assert gate.taken <= 3
        gate.handed_back()
        for _ in results:
            assert gate.live <= 3  # taken and not yet handed back, counting the one in hand
            gate.handed_back()
    assert gate.peak <= 3 and gate.taken == 50


def test_closing_early_cancels_the_rest_and_leaves_no_work_running() -> None:
    gate = Gate(20)
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        return gate.work(i)

    gate.events[0].set()
    with ThreadPoolExecutor(2, thread_name_prefix="ordered-test") as pool:
        results = ordered_map(work, gate.source(), pool=pool, window=3)
        assert next(results) == 0
        for event in gate.events[1:]:
            event.set()  # what is running may finish; nothing new may start
        results.close()
        count = len(started)
        assert gate.taken <= 4 and count <= 4
    assert len(started) == count  # the pool drained without starting cancelled items
    assert not [t for t in threading.enumerate() if t.name.startswith("ordered-test")]


def test_a_failure_is_raised_at_its_turn_after_earlier_results() -> None:
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("bad item 3")
        return i

    with ThreadPoolExecutor(2) as pool:
        results = ordered_map(work, iter(range(10)), pool=pool, window=2)
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad item 3"):
            next(results)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window must be at least 1"):
        list(ordered_map(abs, [1], pool=None, window=0))


def _encode(threads: int, data: bytes) -> tuple[list[EncodedSegment], bytes]:
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=3, n=5, segment_size=4096)
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    jobs: list[SegmentJob] = []
    for number, piece in enumerate(pieces):
        jobs += encoder.claim(piece, number == len(pieces) - 1)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        segments = [
            encoder.accept(s)
            for s in ordered_map(encoder.encode_job, jobs, pool=pool, window=threads + 1)
        ]
    finally:
        if pool is not None:
            pool.shutdown()
    return segments, encoder.manifest().encode()


def test_two_threads_encode_exactly_what_one_thread_does() -> None:
    data = bytes(range(256)) * 200 + b"tail"
    one, manifest_one = _encode(1, data)
    two, manifest_two = _encode(2, data)
    assert manifest_one == manifest_two
    assert [s.hashes for s in one] == [s.hashes for s in two]
    assert [[bytes(b) for b in s.blocks] for s in one] == [
        [bytes(b) for b in s.blocks] for s in two
    ]
