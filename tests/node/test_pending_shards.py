"""Shards of records the ledger does not know: each writer's pending bytes are capped,
refused before anything is written, released when the ledger learns the record or
its shards go, rebuilt at start; such records go a short grace after their last block."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from node.net.dispatch import Dispatcher
from node.net.errors import RemoteError, RequestError
from node.records.pending import PendingBytes
from node.records.shard_service import ShardService
from node.sim.nodes import segments
from protocol.ledger.entries import derive_record_id
from protocol.net.messages import ErrorCode
from protocol.records.messages import DropShards, ShardsStored, StoreShards
from storage.codec.manifest import RecordMetadata
from storage.store.holdings import ROW_WEIGHT, Holdings
from storage.store.memory import MemoryShardStore
from tests.node.cluster import Cluster, holders_of, read_all, small_config

WRITER, MEMBER = b"w" * 32, b"m" * 32
NONCES: dict[bytes, bytes] = {}  # record id -> the nonce it was derived from


def new_id(owner: bytes) -> bytes:
    """A record id owned by `owner` (only its owner uploads it before it is recorded)."""
    nonce = os.urandom(16)
    record_id = derive_record_id(owner, nonce)
    NONCES[record_id] = nonce
    return record_id


def batch(record_id: bytes, segment: int = 0) -> StoreShards:
    """One block of an unrecorded record, as its owner sends it."""
    return StoreShards(
        record_id, None, 0, segment, (os.urandom(BLOCK),), False, NONCES.get(record_id)
    )


BLOCK = 64 * 1024
CAP = 4 * (BLOCK + ROW_WEIGHT)  # four one-block records


@dataclass
class Caller:
    remote_public_key: bytes


@dataclass
class Holder:
    """One node's holder side over a holdings file, with a settable clock and ledger."""

    path: Path
    now_ms: int = 1_000
    recorded: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.store = MemoryShardStore()
        self.open()

    def open(self) -> None:
        self.holdings = Holdings(self.path)
        self.shards = ShardService(
            store=self.store,
            holdings=self.holdings,
            site="here",
            announce=lambda key: None,
            withdraw=lambda key: None,
            clock_ms=lambda: self.now_ms,
            recorded=self.recorded.__contains__,
            pending_cap=CAP,
        )
        self.shards.rebuild_pending()
        self.dispatcher = Dispatcher()
        self.shards.install(self.dispatcher)

    async def store_block(self, sender: bytes, record_id: bytes, segment: int = 0) -> None:
        reply = await self.dispatcher(batch(record_id, segment), Caller(sender))
        assert isinstance(reply, ShardsStored) and reply.stored == 1


def test_reservations_settle_to_what_was_added() -> None:
    pending = PendingBytes(cap=100)
    first = pending.reserve(b"r1", WRITER, 60)
    assert first is not None and pending.of(WRITER) == 60
    assert pending.reserve(b"r2", WRITER, 41) is None  # would pass the cap: nothing charged
    assert pending.of(WRITER) == 60
    assert pending.reserve(b"r2", MEMBER, 100) is not None  # another writer has its own
    pending.settle(first, 30, keep=True)  # a resent block added less than reserved
    assert pending.of(WRITER) == 30 and pending.writer_of(b"r1") == WRITER
    later = pending.reserve(b"r1", MEMBER, 10)  # charged to the record's writer
    assert later is not None and later.writer == WRITER
    pending.settle(later, 10, keep=False)  # recorded meanwhile: not counted
    assert pending.of(WRITER) == 30
    assert pending.release(b"r1") == 30 and pending.of(WRITER) == 0
    assert pending.release(b"r1") == 0


async def test_a_writer_over_its_cap_is_refused_before_anything_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = Holder(tmp_path / "h.sqlite")
    for _ in range(4):
        await holder.store_block(MEMBER, new_id(MEMBER))
    assert holder.shards.pending.of(MEMBER) == CAP
    used, records = holder.store.used_bytes, holder.holdings.records()
    for _ in range(20):  # a member streaming on gains nothing
        refused = new_id(MEMBER)
        with pytest.raises(RequestError) as caught:
            await holder.store_block(MEMBER, refused)
        assert caught.value.code == ErrorCode.UNAVAILABLE
        assert "pending bytes cap" in caught.value.detail
    assert holder.store.used_bytes == used and holder.holdings.records() == records
    capped = [r for r in caplog.records if r.getMessage() == "pending shard bytes capped"]
    assert len(capped) == 1  # the offence is logged once
    # An honest writer's upload to the same node is unaffected...
    upload = new_id(WRITER)
    for segment in range(3):
        await holder.store_block(WRITER, upload, segment)
    assert holder.shards.pending.of(WRITER) == 3 * BLOCK + ROW_WEIGHT
    # ...and so is anyone's batch of a record the ledger knows (repair), even the member's.
    recorded = os.urandom(32)
    holder.recorded.add(recorded)
    await holder.store_block(MEMBER, recorded)
    assert holder.shards.pending.of(MEMBER) == CAP and recorded not in holder.shards.pending


async def test_bytes_leave_the_count_when_recorded_dropped_or_collected(tmp_path: Path) -> None:
    holder = Holder(tmp_path / "h.sqlite")
    upload, dropped, abandoned = new_id(WRITER), new_id(WRITER), new_id(WRITER)
    for record_id in (upload, dropped, abandoned):
        await holder.store_block(WRITER, record_id)
    one = BLOCK + ROW_WEIGHT
    assert holder.shards.pending.of(WRITER) == 3 * one
    holder.recorded.add(upload)  # the put finished: its ledger entry arrived
    holder.shards.now_recorded([upload, os.urandom(32)])
    assert holder.shards.pending.of(WRITER) == 2 * one
    await holder.dispatcher(DropShards(dropped), Caller(WRITER))
    assert holder.shards.pending.of(WRITER) == one
    holder.now_ms += 3_600_000
    # (the recorded upload's incomplete index waits for the longer orphan grace)
    assert await holder.shards.collect(holder.recorded, holder.now_ms - 1000, 0) == (1, 0)
    assert holder.shards.pending.of(WRITER) == 0
    assert holder.holdings.records() == [upload]


async def test_the_count_survives_a_restart(tmp_path: Path) -> None:
    holder = Holder(tmp_path / "h.sqlite")
    for _ in range(4):
        await holder.store_block(MEMBER, new_id(MEMBER))
    known = new_id(WRITER)
    await holder.store_block(WRITER, known)
    holder.recorded.add(known)  # recorded while this node was down
    holder.holdings.close()
    holder.open()
    assert holder.shards.pending.of(MEMBER) == CAP and holder.shards.pending.of(WRITER) == 0
    with pytest.raises(RequestError, match="pending bytes cap"):
        await holder.store_block(MEMBER, new_id(MEMBER))


async def test_unrecorded_shards_go_a_grace_after_their_last_block(tmp_path: Path) -> None:
    # A long honest upload is never cut: only a record idle for the grace is collected.
    holder = Holder(tmp_path / "h.sqlite")
    grace = 3_600_000
    long_upload, left = new_id(WRITER), new_id(MEMBER)
    await holder.store_block(WRITER, long_upload, 0)
    await holder.store_block(MEMBER, left)
    for segment in range(1, 4):  # the upload goes on for hours, a block now and then
        holder.now_ms += grace // 2
        await holder.store_block(WRITER, long_upload, segment)
        await holder.shards.collect(holder.recorded, holder.now_ms - grace)
    assert holder.holdings.records() == [long_upload]
    assert holder.shards.pending.of(MEMBER) == 0
    assert holder.shards.pending.of(WRITER) == 4 * BLOCK + ROW_WEIGHT


async def test_a_member_streaming_unrecorded_shards_is_capped_and_collected(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # Whole nodes: a member floods one node with shards it never records. It is capped,
    # an honest put meanwhile succeeds and is readable, the ledger entry takes the
    # writer's bytes out of its count, and an hour after their last block the member's
    # shards are gone (the node's clock is moved on, nothing waits).
    cap = 1024 * 1024
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        config = small_config(pending_bytes_per_writer=cap, unrecorded_grace=3600.0)
        await cluster.add_many(nursery, 6, config)
        writer, member = cluster.nodes[0], cluster.nodes[5]
        attacked = cluster.nodes[:5]  # every node but the member
        for target in attacked:
            sent = refused = 0
            for _ in range(24):  # 24 records of one 64 KiB block: 1.5 MiB offered
                message = batch(new_id(member.public_key))
                try:
                    await member.port.call(target.contact, message, 5.0)
                    sent += 1
                except RemoteError as exc:
                    assert exc.code == ErrorCode.UNAVAILABLE
                    assert "pending bytes cap" in exc.detail
                    refused += 1
            assert sent == cap // (BLOCK + ROW_WEIGHT) and refused == 24 - sent
            assert target.shards.pending.of(member.public_key) <= cap
        capped = [r for r in caplog.records if r.getMessage() == "pending shard bytes capped"]
        assert len(capped) == len(attacked)  # once per node, not once per refusal
        # An honest writer's put to the same nodes is unaffected.
        data = os.urandom(300_000)
        result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        assert await read_all(writer, result.record_id) == data
        target = next(n for n in holders_of(cluster, result.record_id) if n is not writer)
        while target.shards.pending.of(writer.public_key):  # until gossip brings the entry
            await target.ledger.changed()
        # An honest upload still going on when the grace has passed is kept.
        going_on = new_id(writer.public_key)
        first = batch(going_on)
        await writer.port.call(target.contact, first, 5.0)
        await target.ledger.ledger_caught_up.wait()
        real_clock = target.parts.wall_clock
        target.parts.wall_clock = lambda: real_clock() + 2 * 3600
        later = batch(going_on, 1)
        await writer.port.call(target.contact, later, 5.0)
        await target.upkeep.run_pass()
        held = target.shards.holdings.records()
        assert result.record_id in held and going_on in held
        assert len(held) == 2  # the member's shards are gone...
        assert target.shards.pending.of(member.public_key) == 0  # ...and no longer counted
        message = batch(new_id(member.public_key))
        assert isinstance(await member.port.call(target.contact, message, 5.0), ShardsStored)
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()
