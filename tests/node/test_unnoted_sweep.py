"""Blocks on disk that no holdings row names (a crash between a batch's store and its
note) are deleted when the node starts; noted blocks, shared or not, are kept."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trio

import tests.node.cluster as cluster_module
from node.assembly import Node
from node.sim.nodes import segments
from storage.codec.erasure import BytesLike
from storage.codec.manifest import RecordMetadata
from storage.store.memory import MemoryShardStore
from tests.node.cluster import Cluster, read_all, small_config
from tests.node.test_block_refs import Watched

STRAY = b"a block whose batch never reached holdings" * 50
STRAY_DIGEST = MemoryShardStore().add(STRAY)


async def test_a_holder_deletes_unnoted_blocks_and_keeps_every_noted_one(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer = cluster.nodes[0]
        data = os.urandom(100_000)
        result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        holder = next(
            n for n in cluster.nodes[1:] if n.shards.holdings.indices(result.record_id)[0]
        )
        store = holder.parts.store
        kept = store.digests()
        stray = store.add(STRAY)
        assert await holder.shards.sweep_unnoted() == 1
        assert store.digests() == kept and stray not in store
        assert await holder.shards.sweep_unnoted() == 0
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_the_sweep_runs_when_a_node_starts(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[MemoryShardStore] = []

    def with_a_stray(capacity: int | None = None) -> MemoryShardStore:
        store = MemoryShardStore(capacity)
        store.add(STRAY)  # what a crash left on its disk before this start
        made.append(store)
        return store

    monkeypatch.setattr(cluster_module, "MemoryShardStore", with_a_stray)
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())  # each `serve` reported ready
        # Beside holdings that name fewer blocks than are unnoted (lost or replaced), nothing
        # is deleted.
        assert all(STRAY_DIGEST in store for store in made)
        data = os.urandom(50_000)
        await cluster.nodes[0].records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        nursery.cancel_scope.cancel()
    # The same stores and holdings started again: a node whose holdings name a record
    # deletes its stray at start; one that holds nothing still keeps it.
    stores = list(made)
    monkeypatch.setattr(cluster_module, "MemoryShardStore", lambda capacity=None: stores.pop(0))
    again = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await again.add_many(nursery, 6, small_config())
        holding = [bool(node.shards.holdings.records()) for node in again.nodes]
        assert sum(holding) >= 4
        assert [STRAY_DIGEST not in node.parts.store for node in again.nodes] == holding
        nursery.cancel_scope.cancel()


async def test_holdings_that_lost_most_of_what_is_on_disk_delete_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A lost holdings.sqlite, then one batch noted before the next start (any member
    can send one): the sweep must not take the node's whole store for crash leftovers."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer = cluster.nodes[0]
        data = os.urandom(400_000)
        result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        holder = next(
            n for n in cluster.nodes[1:] if n.shards.holdings.indices(result.record_id)[0]
        )
        store, holdings = holder.parts.store, holder.shards.holdings
        kept = store.digests()
        assert len(kept) >= 2
        holdings.remove(result.record_id)  # the rows are lost, the blocks are not
        stray = store.add(STRAY)  # one batch noted since
        holdings.arrived(b"m" * 32, None, 0, 1, uploader=None, blocks=[(stray, len(STRAY))])
        assert await holder.shards.sweep_unnoted() == 0
        assert all(digest in store for digest in kept)
        nursery.cancel_scope.cancel()


async def test_the_sweep_keeps_a_block_renamed_for_an_older_manifest(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The port serves while the sweep runs: a version 2 record's early blocks are stored
    again under their BLAKE2b names when its manifest comes, and noted after; a sweep
    between the two must not take the renamed block."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        config = small_config(transfer_batch_bytes=64 * 1024, manifest_version=2)
        await cluster.add_many(nursery, 6, config)
        writer = cluster.nodes[0]
        renamed: dict[bytes, bytes] = {}
        sweeps: list[threading.Thread] = []

        def sweep_after_put(node: Node) -> None:
            store, refs = node.parts.store, node.shards.removal.refs
            changed = refs._changed = Watched()
            put = store.put

            def put_then_sweep(digest: bytes, block: BytesLike) -> bool:
                stored = put(digest, block)
                if node.public_key not in renamed:
                    renamed[node.public_key] = digest

                    def sweep_and_say() -> None:
                        node.shards.removal.sweep_unnoted()
                        changed.note()

                    sweep = threading.Thread(target=sweep_and_say)
                    sweeps.append(sweep)
                    sweep.start()
                    changed.until_waiting()  # the sweep is done, or waits for this batch
                return stored

            store.put = put_then_sweep  # type: ignore[method-assign]

        for node in cluster.nodes[1:]:
            sweep_after_put(node)
        data = os.urandom(300_000)
        result = await writer.records.put(
            segments(data, 64 * 1024), metadata=RecordMetadata(), size_hint=len(data)
        )
        for sweep in sweeps:
            sweep.join(timeout=60)
        assert renamed
        for node in cluster.nodes[1:]:
            if node.public_key in renamed:
                assert renamed[node.public_key] in node.parts.store
        assert all(
            node.shards.holdings.indices(result.record_id)[0]
            for node in cluster.nodes[1:]
            if node.public_key in renamed
        )
        nursery.cancel_scope.cancel()
