"""A member that misuses the shard RPCs harms nobody else's blocks or uploads: a manifest
naming another record's blocks and then dropped deletes none of them, and a drop sent
for someone else's upload does not refuse that upload's batches."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import trio

from node.sim.nodes import segments
from protocol.dht.messages import AddProvider, Stored
from protocol.ledger.entries import derive_record_id
from protocol.records.messages import DropShards, ShardsStored, StoreShards
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, read_all, small_config


async def test_a_fake_manifest_naming_a_victims_blocks_deletes_none_of_them(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        victim, attacker = cluster.nodes[0], cluster.nodes[5]
        data = os.urandom(150_000)
        result = await victim.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        targets = [n for n in holders_of(cluster, result.record_id) if n is not attacker]
        assert targets
        fake_nonce = os.urandom(16)  # a record of its own: it may upload it
        fake_id = derive_record_id(attacker.public_key, fake_nonce)
        for holder in targets:
            manifest = holder.shards.manifest(result.record_id)
            assert manifest is not None
            fake = dataclasses.replace(manifest, record_id=fake_id).encode()
            (index,) = holder.shards.holdings.indices(result.record_id)[0][:1]
            # "Complete" without bytes: the holder already has every block it names.
            reply = await attacker.port.call(
                holder.contact,
                StoreShards(fake_id, fake, index, 0, (), True, fake_nonce),
                5.0,
            )
            assert (
                isinstance(reply, ShardsStored) and reply.complete
            )  # the claim is accepted (issue 13 bounds what it buys)
            await attacker.port.call(holder.contact, DropShards(fake_id), 5.0)
            assert fake_id not in holder.shards.holdings.records()
        for holder in targets:  # every block of the victim is still on disk
            manifest = holder.shards.manifest(result.record_id)
            assert manifest is not None
            for index in holder.shards.holdings.indices(result.record_id)[0]:
                for segment in range(manifest.segment_count):
                    assert manifest.block_hash(segment, index) in holder.shards.store
        assert await read_all(victim, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_drop_for_someone_elses_upload_does_not_refuse_its_batches(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer, member, holder = cluster.nodes[0], cluster.nodes[4], cluster.nodes[5]
        nonce = os.urandom(16)
        record_id = derive_record_id(writer.public_key, nonce)
        block = os.urandom(1000)
        # The member learns (or guesses) the record id and drops it first.
        await member.port.call(holder.contact, DropShards(record_id), 5.0)
        reply = await writer.port.call(
            holder.contact, StoreShards(record_id, None, 0, 0, (block,), False, nonce), 5.0
        )
        assert isinstance(reply, ShardsStored) and reply.stored == 1
        assert record_id in holder.shards.holdings.records()
        # The writer's own drop still works, and refuses its own late batches.
        await writer.port.call(holder.contact, DropShards(record_id), 5.0)
        assert record_id not in holder.shards.holdings.records()
        try:
            await writer.port.call(
                holder.contact, StoreShards(record_id, None, 0, 1, (block,), False, nonce), 5.0
            )
        except Exception as exc:
            assert "dropped by its writer" in str(exc)
        else:
            raise AssertionError("a late batch of a dropped upload was accepted")
        nursery.cancel_scope.cancel()


async def test_an_index_completed_from_shared_blocks_keeps_them_when_the_other_record_goes(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Content addressing shares identical blocks between records: an index that was
    # completed from blocks already held keeps them after the first record is deleted.
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        owner, other = cluster.nodes[0], cluster.nodes[5]
        result = await owner.records.put(
            segments(os.urandom(150_000), 64 * 1024), metadata=RecordMetadata()
        )
        holder = next(n for n in holders_of(cluster, result.record_id) if n is not other)
        manifest = holder.shards.manifest(result.record_id)
        assert manifest is not None
        copy_nonce = os.urandom(16)
        copy_id = derive_record_id(other.public_key, copy_nonce)
        copy = dataclasses.replace(manifest, record_id=copy_id).encode()
        index = holder.shards.holdings.indices(result.record_id)[0][0]
        stored = StoreShards(copy_id, copy, index, 0, (), True, copy_nonce)
        await other.port.call(holder.contact, stored, 5.0)
        await holder.shards.delete_record(result.record_id)  # as a tombstone would
        for segment in range(manifest.segment_count):
            assert manifest.block_hash(segment, index) in holder.shards.store
        assert holder.shards.holdings.indices(copy_id)[0] == [index]
        nursery.cancel_scope.cancel()


async def test_a_member_cannot_plant_or_replay_someone_elses_provider_record(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer, member = cluster.nodes[0], cluster.nodes[5]
        result = await writer.records.put(
            segments(os.urandom(50_000), 64 * 1024), metadata=RecordMetadata()
        )
        for node in cluster.nodes:  # holders announce once their ledger has the record
            while result.record_id not in node.ledger.state().records:
                await node.ledger.changed()
            await node.announcements_done()
        now = member.dht.wall_clock()
        stolen = next(
            record
            for node in cluster.nodes
            for record in node.dht.store.provider_records(now)
            if record.provider.public_key != member.public_key
        )
        target = next(
            n
            for n in cluster.nodes
            if n not in (member,) and n.public_key != stolen.provider.public_key
        )
        reply = await member.port.call(target.contact, AddProvider(member.dht.info, stolen), 5.0)
        assert isinstance(reply, Stored) and not reply.accepted
        assert "only from its provider" in reply.reason
        nursery.cancel_scope.cancel()
