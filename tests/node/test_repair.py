"""Repair, check and tombstones across whole nodes on the memory transport."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from node.assembly import Node
from node.net.errors import RpcError
from node.sim.nodes import segments
from protocol.records.messages import FetchHeld
from protocol.records.repair import coordinator_order
from storage.codec.manifest import RecordMetadata
from storage.store.memory import MemoryShardStore
from tests.node.cluster import Cluster, harm_first_block, holders_of, read_all, small_config

DATA_SIZE = 200_000


async def put_record(cluster: Cluster, writer: Node, data: bytes) -> bytes:
    result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
    for node in cluster.nodes:  # every live node learns of the record before it matters
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    return result.record_id


async def test_repair_restores_n_distinct_holders_after_two_die(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 8, small_config())
        data = os.urandom(DATA_SIZE)
        writer = cluster.nodes[0]
        record_id = await put_record(cluster, writer, data)
        first = holders_of(cluster, record_id)
        assert len(first) == 5
        dead = [n for n in first if n is not writer][:2]
        for node in dead:
            cluster.crash(node)
        survivor = next(n for n in first if n not in dead)
        before = await survivor.repairer.check(record_id)
        assert before.distinct_hosts == 3 and len(before.missing) == 2 and before.readable

        report = await survivor.repairer.repair(record_id)
        assert sorted(report.placed) == sorted(before.missing) and not report.failed
        after = await survivor.repairer.check(record_id)
        assert after.healthy and after.distinct_hosts == 5
        dead_keys = {n.public_key for n in dead}
        assert not dead_keys & set(after.holders)

        # A later loss of n-k other holders still leaves the record readable.
        for node in [
            n for n in holders_of(cluster, record_id) if n not in dead and n is not writer
        ][:2]:
            cluster.crash(node)
        assert await read_all(writer, record_id) == data
        nursery.cancel_scope.cancel()


async def test_only_the_coordinator_repairs_in_a_background_pass(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 8, small_config())
        record_id = await put_record(cluster, cluster.nodes[0], os.urandom(DATA_SIZE))
        holders = holders_of(cluster, record_id)
        cluster.crash(holders[-1])
        live = holders[:-1]
        first = coordinator_order(record_id, [n.public_key for n in live])[0]
        coordinator = next(n for n in live if n.public_key == first)
        results = {}
        for node in live:
            results[node.public_key] = await node.upkeep.run_pass()
        repaired = [key for key, reports in results.items() if reports]
        assert repaired == [coordinator.public_key]
        assert (await coordinator.repairer.check(record_id)).healthy
        nursery.cancel_scope.cancel()


async def test_check_finds_a_corrupt_block_and_repair_replaces_the_index(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 7, small_config())
        data = os.urandom(DATA_SIZE)
        record_id = await put_record(cluster, cluster.nodes[0], data)
        victim = holders_of(cluster, record_id)[0]
        index = victim.shards.holdings.indices(record_id)[0][0]
        manifest = victim.shards.manifest(record_id)
        assert manifest is not None
        store = victim.parts.store
        assert isinstance(store, MemoryShardStore)
        store.damage(manifest.block_hash(1, index), b"rotten" * 100)

        health = await cluster.nodes[0].repairer.check(record_id, verify=True)
        assert health.corrupt == {victim.public_key: (index,)}
        assert index in health.missing and victim.public_key not in health.holders

        report = await cluster.nodes[0].repairer.repair(record_id)
        assert list(report.placed) == [index]
        assert (await cluster.nodes[0].repairer.check(record_id, verify=True)).healthy
        assert await read_all(cluster.nodes[0], record_id) == data
        nursery.cancel_scope.cancel()


async def test_repair_moves_a_crowded_index_to_a_new_node(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        for _ in range(4):  # n=5 over 4 nodes: one node takes two indices
            await cluster.add(nursery, small_config())
        data = os.urandom(DATA_SIZE)
        record_id = await put_record(cluster, cluster.nodes[0], data)
        before = await cluster.nodes[0].repairer.check(record_id)
        assert before.distinct_hosts == 4 and len(before.crowded) == 1 and not before.missing
        assert (await cluster.nodes[0].repairer.repair(record_id)).note.startswith("no node")

        newcomer = await cluster.add(nursery, small_config())
        report = await cluster.nodes[0].repairer.repair(record_id)
        assert report.placed == {before.crowded[0]: newcomer.public_key}
        assert (await cluster.nodes[0].repairer.check(record_id)).healthy
        nursery.cancel_scope.cancel()


async def test_a_site_back_after_a_put_gets_copies_so_losing_any_site_keeps_the_record(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        writer = await cluster.add(nursery, small_config(), site="b")
        for _ in range(5):
            await cluster.add(nursery, small_config(), site="a")
        data = os.urandom(DATA_SIZE)
        result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        # Two sites cannot hold 5 indices with at most n - k = 2 on each: not degraded.
        assert not result.verdict.degraded and result.verdict.sites == 2
        record_id = result.record_id
        for node in cluster.nodes:
            while record_id not in node.ledger.state().records:
                await node.ledger.changed()
        third = await cluster.add(nursery, small_config(), site="c")  # site c comes (back)
        for node in cluster.nodes:
            node.dht.observe(third.contact)
        holders = holders_of(cluster, record_id)
        assert await writer.records.reach.refresh_sites() == 3  # as `check` does
        before = await writer.repairer.check(record_id)
        assert before.network_sites == 3 and before.distinct_hosts == 5
        assert not before.site_safe and before.site_losses["a"] < 3
        first = coordinator_order(record_id, [n.public_key for n in holders])[0]
        coordinator = next(n for n in holders if n.public_key == first)
        (report,) = await coordinator.upkeep.run_pass()
        assert report.copied and not report.failed
        after = await writer.repairer.check(record_id)
        assert after.site_safe and after.healthy and min(after.site_losses.values()) >= 3
        for node in cluster.nodes:  # hospital a goes dark
            if node.shards.site == "a":
                cluster.crash(node)
        assert await read_all(writer, record_id) == data
        nursery.cancel_scope.cancel()


async def test_holders_delete_their_shards_when_the_record_is_tombstoned(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        owner = cluster.nodes[2]
        record_id = await put_record(cluster, owner, os.urandom(DATA_SIZE))
        holders = holders_of(cluster, record_id)
        assert all(n.parts.store.used_bytes > 0 for n in holders)
        await owner.records.delete(record_id)
        for node in holders:
            while record_id not in node.ledger.state().tombstones:
                await node.ledger.changed()
        # The deletion runs in a worker thread, which wait_all_tasks_blocked does not
        # wait for: wait (in virtual time) until its state shows.
        with trio.fail_after(600):
            for node in holders:
                while node.shards.holdings.records() or node.parts.store.used_bytes:  # noqa: ASYNC110
                    await trio.sleep(0.1)
        nursery.cancel_scope.cancel()


async def test_a_damaged_or_lost_block_is_found_by_the_scrub_and_repaired(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 8, small_config(scrub_bytes=10**9))
        data = os.urandom(DATA_SIZE)
        record_id = await put_record(cluster, cluster.nodes[0], data)
        victims = [n for n in holders_of(cluster, record_id) if n is not cluster.nodes[0]][:2]
        rotten, lost = victims
        for node, harm in ((rotten, "rot"), (lost, "loss")):
            harm_first_block(node, harm)
        # Nobody runs check: the background passes find and repair both.
        for _ in range(2):
            for node in cluster.nodes:
                await node.upkeep.run_pass()
        health = await cluster.nodes[0].repairer.check(record_id, verify=True)
        assert health.healthy and not health.corrupt  # rebuilt (perhaps on the same nodes)
        for node in victims:
            _, damaged = await node.shards.scrub_some(10**9)
            assert damaged == []  # what they hold now reads back whole
        assert await read_all(cluster.nodes[0], record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_read_that_finds_a_block_missing_demotes_the_index(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        data = os.urandom(DATA_SIZE)
        writer = cluster.nodes[0]
        record_id = await put_record(cluster, writer, data)
        # A holder of a data shard (readers ask those first) loses its disk.
        victim = next(
            n
            for n in holders_of(cluster, record_id)
            if n is not writer and n.shards.holdings.indices(record_id)[0][0] < 3
        )
        store = victim.parts.store
        assert isinstance(store, MemoryShardStore)
        for digest in store.digests():
            store.delete(digest)
        assert await read_all(writer, record_id) == data  # from the others
        # The get may have had k whole indices before the victim's answer (a small record
        # is read in one round from k + 1 holders); a read the victim serves itself:
        statement = writer.records.own_permits(record_id)()
        assert statement is not None
        with contextlib.suppress(RpcError):
            await writer.records.port.call(victim.contact, FetchHeld(record_id, statement), 5.0)
        assert victim.shards.holdings.indices(record_id)[0] == []  # no longer claimed
        found = [r for r in caplog.records if r.getMessage() == "damaged shard found"]
        assert len(found) == 1  # said once, though several blocks were missing
        assert found[0].__dict__["fields"]["found_by"] == "read"
        nursery.cancel_scope.cancel()
