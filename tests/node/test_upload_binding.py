"""Shards are bound to their record's owner and to the ledger's manifest, so a member
that learns a record id can neither take over its upload nor poison it: a record the
ledger does not know is uploaded by its owner alone (the nonce its id derives from), a
recorded record's holders take only the ledger's manifest (so repair is not blocked by
a planted one, and nobody stores unchecked blocks under a recorded id), and blocks a
manifest does not name do not live on with the record."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from node.assembly import Node
from node.net.errors import RemoteError
from node.net.rpc_port import Caller
from node.sim.nodes import segments
from protocol.ledger.entries import derive_record_id
from protocol.net.messages import ErrorCode
from protocol.records.messages import ShardsStored, StoreShards
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import Manifest, RecordMetadata
from tests.node.cluster import Cluster, holders_of, read_all, small_config

BATCH = 64 * 1024


def bogus(manifest: Manifest) -> bytes:
    """A manifest for the same id that names other blocks (one segment, wrong hashes)."""
    return dataclasses.replace(
        manifest, block_hashes=os.urandom(len(manifest.block_hashes))
    ).encode()


async def test_a_member_that_learns_a_record_id_cannot_squat_its_upload(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The reviewer's probe: a holder of a put in progress plants manifests of its own for
    the record on every other node; before, every put it was placed on failed."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=BATCH))
        writer, member = cluster.nodes[0], cluster.nodes[7]
        planted = refused = 0
        seen: set[bytes] = set()
        honest = member.dispatcher._routes[StoreShards]

        async def squat(message: StoreShards, caller: Caller) -> Any:
            nonlocal planted, refused
            if message.record_id not in seen:
                seen.add(message.record_id)
                fake = StoreShards(
                    message.record_id, os.urandom(200), 0, 0, (), False, message.owner_nonce
                )
                for node in cluster.nodes:
                    if node not in (writer, member):
                        try:
                            await member.port.call(node.contact, fake, 5.0)
                            planted += 1
                        except RemoteError as exc:
                            assert "owner" in exc.detail
                            refused += 1
            return await honest(message, caller)

        member.dispatcher._routes[StoreShards] = squat
        for number in range(6):
            data = os.urandom(2 * 1024 * 1024 // 8 + number)
            result = await writer.records.put(segments(data, BATCH), metadata=RecordMetadata())
            assert result.verdict.holders == 5
            assert await read_all(writer, result.record_id) == data
        assert seen and planted == 0 and refused >= 6 * len(seen) - 6
        nursery.cancel_scope.cancel()


async def test_an_upload_of_an_unknown_record_without_its_owner_nonce_is_told_to_wait(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """No nonce (a repair onto a node whose ledger lags): NOT_RECORDED, which says come
    back after gossip; a wrong nonce (posing as the owner): BAD_REQUEST. Neither is kept."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 2, small_config())
        member, holder = cluster.nodes
        record_id = derive_record_id(os.urandom(32), os.urandom(16))
        block = (os.urandom(BATCH),)
        with pytest.raises(RemoteError) as lagging:
            await member.port.call(
                holder.contact, StoreShards(record_id, None, 0, 0, block, False), 5.0
            )
        assert lagging.value.code == ErrorCode.NOT_RECORDED and "ledger" in lagging.value.detail
        posing = StoreShards(record_id, None, 0, 0, block, False, os.urandom(16))
        with pytest.raises(RemoteError) as wrong:
            await member.port.call(holder.contact, posing, 5.0)
        assert wrong.value.code == ErrorCode.BAD_REQUEST and "owner nonce" in wrong.value.detail
        assert record_id not in holder.shards.holdings.records()
        nursery.cancel_scope.cancel()


async def recorded_record(cluster: Cluster, writer: Node) -> tuple[bytes, bytes, Manifest]:
    data = os.urandom(300_000)
    result = await writer.records.put(segments(data, BATCH), metadata=RecordMetadata())
    for node in cluster.nodes:
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    return result.record_id, data, result.manifest


async def test_a_planted_manifest_or_unchecked_blocks_for_a_recorded_record_are_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=BATCH))
        writer, member = cluster.nodes[0], cluster.nodes[7]
        record_id, data, manifest = await recorded_record(cluster, writer)
        others = [
            n for n in cluster.nodes if n not in holders_of(cluster, record_id) and n is not member
        ]
        assert others
        for node in others:
            with pytest.raises(RemoteError, match="not the one the ledger records"):
                await member.port.call(
                    node.contact, StoreShards(record_id, bogus(manifest), 0, 0, (), False), 5.0
                )
            junk = StoreShards(record_id, None, 0, 0, (os.urandom(BATCH),), False)
            with pytest.raises(RemoteError, match="must carry it"):
                await member.port.call(node.contact, junk, 5.0)
            assert record_id not in node.shards.holdings.records()
        # Repair goes on onto those nodes as if nothing had been tried.
        holders = holders_of(cluster, record_id)
        for lost in [h for h in holders if h is not writer][:2]:
            cluster.crash(lost)
        report = await writer.repairer.repair(record_id)
        assert not report.failed
        assert (await writer.repairer.check(record_id, verify=False)).healthy
        assert await read_all(writer, record_id) == data
        nursery.cancel_scope.cancel()


async def test_blocks_the_manifest_does_not_name_go_when_the_index_completes(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Its owner sends junk under its own record before the manifest: it is un-noted and
    deleted at completion, not kept (and uncounted) for as long as the record lives."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 3, small_config())
        owner, holder = cluster.nodes[0], cluster.nodes[1]
        nonce = os.urandom(16)
        record_id = derive_record_id(owner.public_key, nonce)
        encoder = RecordEncoder(
            record_id=record_id, record_key=os.urandom(32), k=2, n=3, segment_size=64 * 1024
        )
        encoded = list(encoder.encode(io.BytesIO(os.urandom(1000))))
        manifest = encoder.manifest()
        junk = os.urandom(5000)
        first = StoreShards(record_id, None, 0, 0, (junk,), False, nonce)
        assert isinstance(await owner.port.call(holder.contact, first, 5.0), ShardsStored)
        used = holder.parts.store.used_bytes
        block = bytes(encoded[0].blocks[0])
        final = StoreShards(record_id, manifest.encode(), 0, 0, (block,), True, nonce)
        reply = await owner.port.call(holder.contact, final, 5.0)
        assert isinstance(reply, ShardsStored) and reply.complete
        assert holder.parts.store.used_bytes == used - len(junk) + len(block)
        nursery.cancel_scope.cancel()
