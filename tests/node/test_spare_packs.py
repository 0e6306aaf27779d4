"""Spare packs are refilled off the batches' path: once at start, again after batches took
them; a store that cannot make them (a full disk) keeps the node serving."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from node.records.spares import SparePacks
from storage.codec.hashing import shard_hash_v3
from storage.errors import StoreFull
from storage.store.disk import SPARE_PACKS, DiskShardStore
from storage.store.memory import MemoryShardStore


class Counting(MemoryShardStore):
    """Counts make_spares calls (in the worker thread) and wakes the test after each."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__(None)
        self.calls = 0
        self.fail = fail  # the first calls that fail as on a full disk
        self.done = trio.Event()
        self._token = trio.lowlevel.current_trio_token()

    def make_spares(self) -> int:
        self.calls += 1
        self._token.run_sync_soon(self.done.set)
        if self.calls <= self.fail:
            raise StoreFull("disk full while making spare shard packs")
        return 1

    async def next_call(self) -> None:
        await self.done.wait()
        self.done = trio.Event()


async def test_spares_are_made_at_start_and_after_each_batch_only() -> None:
    store = Counting()
    spares = SparePacks(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(spares.serve)
        await store.next_call()
        await trio.testing.wait_all_tasks_blocked()
        assert store.calls == 1  # waits for a batch: no busy loop
        spares.taken()
        spares.taken()  # two batches before the refill ran: one refill
        await store.next_call()
        await trio.testing.wait_all_tasks_blocked()
        assert store.calls == 2
        nursery.cancel_scope.cancel()


async def test_a_full_disk_is_logged_and_the_next_batch_tries_again() -> None:
    store = Counting(fail=1)
    spares = SparePacks(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(spares.serve)
        await store.next_call()  # failed: logged, the service goes on
        spares.taken()
        await store.next_call()
        await trio.testing.wait_all_tasks_blocked()
        assert store.calls == 2
        nursery.cancel_scope.cancel()


async def test_a_disk_store_keeps_its_spares_filled(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    spares = SparePacks(store)
    made = trio.Event()
    real = store.make_spares
    token = trio.lowlevel.current_trio_token()

    def watched(count: int = SPARE_PACKS) -> int:
        try:
            return real(count)
        finally:
            token.run_sync_soon(made.set)

    store.make_spares = watched  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(spares.serve)
        await made.wait()
        assert len(store._spares) == SPARE_PACKS
        for seed in range(SPARE_PACKS // 2 + 1):  # down to fewer than half left
            block = bytes([seed]) * 5000
            store.put_many([(shard_hash_v3(block), block)])
        assert len(store._spares) == SPARE_PACKS // 2 - 1
        made = trio.Event()
        spares.taken()
        await made.wait()
        assert len(store._spares) == SPARE_PACKS
        nursery.cancel_scope.cancel()
    store.close()
