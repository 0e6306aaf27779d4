"""A put keeps its promise or says it did not: full holders are passed over, failing ones
replaced, a short put is degraded (or refused with --require-full), and a failed one
leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from node.assembly import Node
from node.records.errors import RecordError
from node.records.put import PutResult
from node.sim.nodes import segments
from protocol.records.messages import DropShards
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, read_all, small_config

SITES = ["a", "a", "b", "b", "c", "c", "d"]
FULL = 1024  # bytes of quota: no record's shard fits


async def hospitals(tmp_path: Path, nursery: trio.Nursery, full_sites: set[str]) -> Cluster:
    cluster = Cluster(tmp_path)
    for site in SITES:
        quota = FULL if site in full_sites else 0
        config = small_config(quota_bytes=quota, transfer_batch_bytes=64 * 1024)
        await cluster.add(nursery, config, site=site)
    return cluster


async def put(node: Node, data: bytes, require_full: bool = False) -> PutResult:
    return await node.records.put(
        segments(data, 64 * 1024),
        metadata=RecordMetadata(),
        size_hint=len(data),
        require_full=require_full,
    )


async def test_full_nodes_are_passed_over_and_the_put_reaches_n_holders(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await hospitals(tmp_path, nursery, full_sites={"a"})
        for number in range(6):
            data = os.urandom(150_000)
            writer = cluster.nodes[2 + number % 5]
            result = await writer.records.put(
                segments(data, 64 * 1024), metadata=RecordMetadata(), size_hint=len(data)
            )
            assert result.verdict.holders == 5 and not result.verdict.degraded
            assert not {"a"} & {n.shards.site for n in holders_of(cluster, result.record_id)}
            assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_holders_that_refuse_mid_put_are_replaced(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await hospitals(tmp_path, nursery, full_sites=set())
        writer = cluster.nodes[6]
        await put(writer, os.urandom(10_000))  # the writer now knows everyone's free space
        for node in cluster.nodes[:2]:  # site a fills up after it said it had room
            node.parts.store.capacity = node.parts.store.used_bytes
        data = os.urandom(400_000)
        result = await put(writer, data)
        held = holders_of(cluster, result.record_id)
        assert len(held) == 5 and not {"a"} & {n.shards.site for n in held}
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_holders_that_die_mid_put_are_replaced(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await hospitals(tmp_path, nursery, full_sites=set())
        writer = cluster.nodes[6]
        hospital_a = cluster.nodes[:2]  # placement spreads over sites: one of them holds

        async def source() -> AsyncIterator[tuple[bytes, bool]]:
            for number in range(6):
                if number == 3:  # hospital a loses power mid-put
                    for node in hospital_a:
                        cluster.crash(node)
                yield os.urandom(64 * 1024), number == 5

        result = await writer.records.put(source(), metadata=RecordMetadata())
        assert result.verdict.holders == 5 and result.verdict.sites == 3
        assert not {n.public_key for n in hospital_a} & set(result.holders.values())
        assert not result.verdict.degraded  # at most n-k = 2 indices on any one site
        nursery.cancel_scope.cancel()


async def test_a_short_put_is_degraded_or_refused_when_a_full_one_is_required(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        for index in range(5):  # exactly n nodes, one of them full
            quota = FULL if index == 4 else 0
            await cluster.add(nursery, small_config(quota_bytes=quota), site=f"s{index}")
        writer = cluster.nodes[0]
        result = await put(writer, os.urandom(100_000))
        verdict = result.verdict
        assert verdict.holders == 4 and verdict.degraded
        assert verdict.reasons == ("4 of 5 shards on distinct nodes",)
        entries = len(writer.ledger.book)
        with pytest.raises(RecordError, match=r"no degradation.*nothing was recorded"):
            await put(writer, os.urandom(100_000), require_full=True)
        assert len(writer.ledger.book) == entries
        kept = {result.record_id}
        for node in cluster.nodes:  # the refused put's shards were dropped everywhere
            assert set(node.shards.holdings.records()) <= kept
        nursery.cancel_scope.cancel()


async def test_only_the_uploader_may_drop_and_never_a_recorded_record(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await hospitals(tmp_path, nursery, full_sites=set())
        writer, member = cluster.nodes[6], cluster.nodes[5]
        result = await put(writer, os.urandom(50_000))
        record_id = result.record_id
        holder = holders_of(cluster, record_id)[0]
        while record_id not in holder.ledger.state().records:  # gossip brought the entry
            await holder.ledger.changed()
        with pytest.raises(Exception, match="in the ledger"):
            await writer.port.call(holder.contact, DropShards(record_id), 5.0)
        # An unrecorded upload in flight: another member's drop is refused.
        holder.shards.holdings.begin(b"u" * 32, None, 0, 1, writer.public_key)
        with pytest.raises(Exception, match="only a record's uploader"):
            await member.port.call(holder.contact, DropShards(b"u" * 32), 5.0)
        assert b"u" * 32 in holder.shards.holdings.records()
        await writer.port.call(holder.contact, DropShards(b"u" * 32), 5.0)
        assert b"u" * 32 not in holder.shards.holdings.records()
        for _ in range(1000):  # a flood of drops for records it never sent costs nothing
            await member.port.call(holder.contact, DropShards(os.urandom(32)), 5.0)
        assert record_id in holder.shards.holdings.records()
        nursery.cancel_scope.cancel()
