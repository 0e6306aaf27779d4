"""Only proven holders count: members that acknowledge blocks and keep none are found
out by the put's storage proof, replaced (while k proven holders remain to rebuild from),
and never counted toward `happy`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from node.assembly import Node
from node.net.errors import RemoteError
from node.records.errors import RecordError
from node.sim.adversary import lie_on
from node.sim.nodes import segments
from protocol.records.messages import GetHoldings, HoldingsFound, ProveShards
from protocol.records.repair import coordinator_order
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, read_all, small_config


async def liars_and_honest(tmp_path: Path, nursery: trio.Nursery) -> tuple[Cluster, set[bytes]]:
    cluster = Cluster(tmp_path)
    await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=64 * 1024))
    liars = cluster.nodes[1:3]
    for node in liars:
        lie_on(node, "fake-storage")
    return cluster, {n.public_key for n in liars}


async def put(node: Node, data: bytes) -> tuple[bytes, dict[int, bytes], int]:
    result = await node.records.put(
        segments(data, 64 * 1024), metadata=RecordMetadata(), size_hint=len(data)
    )
    return result.record_id, result.holders, result.verdict.holders


async def test_holders_that_keep_nothing_are_never_counted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster, liars = await liars_and_honest(tmp_path, nursery)
        writer = cluster.nodes[0]
        stored: dict[bytes, bytes] = {}
        lied_about = 0
        for number in range(6):
            data = os.urandom(50_000 + 40_000 * number)
            record_id, holders, counted = await put(writer, data)
            stored[record_id] = data
            assert not liars & set(holders.values())
            assert counted == len(set(holders.values())) >= 4
            lied_about += sum(
                1
                for node in cluster.nodes[1:3]
                if node.shards.holdings.indices(record_id)[0]  # claims to hold, keeps nothing
            )
        assert lied_about >= 2  # the liars were asked, and claimed, and were not believed
        for liar in cluster.nodes[1:3]:
            cluster.crash(liar)
        for record_id, data in stored.items():  # the proven holders alone serve every record
            assert await read_all(writer, record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_put_among_too_many_liars_fails_instead_of_pretending(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Before the proofs, such a put was 'successful' and unreadable; now it records nothing."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 6, small_config(transfer_batch_bytes=64 * 1024))
        for liar in cluster.nodes[1:4]:
            lie_on(liar, "fake-storage")
        writer = cluster.nodes[0]
        with pytest.raises(RecordError, match="storage proof") as failure:
            await put(writer, os.urandom(100_000))
        assert "nothing was recorded" in str(failure.value)
        assert not writer.ledger.state().records
        nursery.cancel_scope.cancel()


def throw_away_blocks(node: Node, record_id: bytes) -> list[int]:
    """The node keeps claiming the record's indices but deletes their blocks."""
    lie_on(node, "fake-storage")
    manifest = node.shards.manifest(record_id)
    assert manifest is not None
    claimed = node.shards.holdings.indices(record_id)[0]
    for index in claimed:
        for segment in range(manifest.segment_count):
            node.parts.store.delete(manifest.block_hash(segment, index))
    return list(claimed)


async def test_check_audits_instead_of_believing_and_repair_rebuilds_elsewhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A holder that proved its blocks at put time and threw them away later."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=64 * 1024))
        writer = cluster.nodes[0]
        data = os.urandom(300_000)
        record_id, holders, _ = await put(writer, data)
        cheat = next(
            n for n in cluster.nodes if n.public_key in holders.values() and n is not writer
        )
        claimed = throw_away_blocks(cheat, record_id)
        # Its word alone still says healthy ...
        unaudited = (await writer.repairer.survey(record_id, verify=False)).health
        assert unaudited.healthy
        # ... the audit does not believe it.
        health = await writer.repairer.check(record_id, verify=False)
        assert health.unproven == {cheat.public_key: tuple(claimed)}
        assert cheat.public_key not in health.holders and not health.healthy
        assert writer.records.reach.distrusted(cheat.public_key)
        report = await writer.repairer.repair(record_id)
        assert cheat.public_key not in set(report.placed.values())
        after = await writer.repairer.check(record_id, verify=False)
        assert after.healthy and cheat.public_key not in after.holders
        cluster.crash(cheat)
        assert await read_all(writer, record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_repair_pass_audits_and_repairs_without_an_operator(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=64 * 1024))
        writer = cluster.nodes[0]
        record_id, holders, _ = await put(writer, os.urandom(200_000))
        cheats = [n for n in cluster.nodes if n.public_key in holders.values() and n is not writer]
        last = coordinator_order(record_id, [n.public_key for n in cheats])[-1]
        cheat = next(n for n in cheats if n.public_key == last)  # not the coordinator
        throw_away_blocks(cheat, record_id)
        for node in cluster.nodes:  # each node's pass: the owner's audits and repairs
            holds = node.shards.holdings.indices(record_id)[0]
            if node is not cheat and (holds or node is writer):
                while record_id not in node.ledger.state().records:  # gossip brings it
                    await node.ledger.changed()
                await node.upkeep.run_pass()
        health = await writer.repairer.check(record_id, verify=False)
        assert health.healthy and cheat.public_key not in health.holders
        nursery.cancel_scope.cancel()


async def test_a_first_ranked_holder_that_lies_is_found_by_the_owners_audit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The coordinator itself keeps nothing but claims its index: the record looks healthy
    on the holders' word, and holders cannot audit each other (a proof buys no blocks of
    a healthy record). The owner's node audits by permit, finds it, and repairs."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=64 * 1024))
        writer = cluster.nodes[0]
        record_id, holders, _ = await put(writer, os.urandom(200_000))
        holding = [n for n in cluster.nodes if n.public_key in holders.values()]
        candidates = [n for n in holding if n is not writer]
        first = coordinator_order(record_id, [n.public_key for n in candidates])[0]
        cheat = next(n for n in candidates if n.public_key == first)
        throw_away_blocks(cheat, record_id)
        for node in holding:
            if node not in (cheat, writer):
                await node.upkeep.run_pass()  # no other holder finds it out
        assert cheat.public_key in (await writer.repairer.survey(record_id, False)).health.holders
        (report,) = await writer.upkeep.run_pass()  # the owner audits and repairs
        assert report.placed and cheat.public_key in report.before.unproven
        health = await writer.repairer.check(record_id, verify=False)
        assert health.healthy and cheat.public_key not in health.holders
        nursery.cancel_scope.cancel()


async def test_only_the_sender_of_a_shard_asks_for_its_proof_and_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A proof reads up to 64 blocks: a member asking for them a million times would be
    disk work for free, so a holder answers only the node that just completed the index."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 6, small_config())
        writer, member = cluster.nodes[0], cluster.nodes[5]
        record_id, holders, _ = await put(writer, os.urandom(200_000))
        index, holder_key = next(
            (i, key)
            for i, key in holders.items()
            if key not in (writer.public_key, member.public_key)
        )
        holder = next(n for n in cluster.nodes if n.public_key == holder_key)
        ask = ProveShards(record_id, index, os.urandom(32), (0, 1, 2))
        for asker in (member, writer):  # the writer's one proof was spent by its put
            for _ in range(20):
                with pytest.raises(RemoteError, match="only the node that sent"):
                    await asker.port.call(holder.contact, ask, 5.0)
        nursery.cancel_scope.cancel()


async def test_a_verify_flood_reads_a_records_blocks_once_per_period(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 6, small_config())
        writer, member = cluster.nodes[0], cluster.nodes[5]
        record_id, holders, _ = await put(writer, os.urandom(200_000))
        holder = next(
            n for n in cluster.nodes if n.public_key in holders.values() and n is not member
        )
        scrubs = 0
        scrub = holder.shards.scrubber._scrub

        def counted(*args: Any) -> list[int]:
            nonlocal scrubs
            scrubs += 1
            return scrub(*args)

        holder.shards.scrubber._scrub = counted  # type: ignore[method-assign,assignment]
        for _ in range(100):
            answer = await member.port.call(holder.contact, GetHoldings(record_id, True), 5.0)
            assert isinstance(answer, HoldingsFound) and answer.complete
        assert scrubs == 1
        nursery.cancel_scope.cancel()
