"""Only proven holders count: members that acknowledge blocks and keep none are found
out by the put's storage proof, replaced (while k proven holders remain to rebuild from),
and never counted toward `happy`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from node.assembly import Node
from node.records.errors import RecordError
from node.sim.adversary import lie_on
from node.sim.nodes import segments
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
