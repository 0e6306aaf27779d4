"""Every read leaves a trace: the reader's node logs it, holders witness what it skips.

Honest: a read appears in every ledger with its purpose, logged by the reader's
node. Adversarial: a reader node that never logs is still in the audit (the
holders that served it log it); a flood of one read is witnessed once per
holder; a version 1 permit, an unknown purpose, a replayed statement get no block.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import msgpack
import nacl.signing
import trio

from node.assembly import Node
from node.sim.nodes import segments
from protocol.ledger.access import AccessInfo
from protocol.ledger.entries import AccessBody
from protocol.net.messages import ErrorCode
from protocol.records import permit
from protocol.records.messages import BlocksFound
from protocol.records.purpose import Purpose
from storage.codec.crypt import open_sealed_key
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, knows_grant, small_config
from tests.node.test_signed_reads import first_block, refusal

DATA = os.urandom(150_000)


async def stored(cluster: Cluster, nursery: trio.Nursery) -> tuple[Node, bytes]:
    await cluster.add_many(nursery, 7, small_config())  # 5 hold: 2 do not, one not the owner
    owner = cluster.nodes[0]
    result = await owner.records.put(segments(DATA, 64 * 1024), metadata=RecordMetadata())
    for node in cluster.nodes:
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    return owner, result.record_id


async def a_read(node: Node, record_id: bytes, reader: bytes) -> AccessInfo:
    """Wait until `node`'s ledger shows a read of the record by `reader`."""
    while True:
        found = [a for a in node.ledger.state().reads_of(record_id) if a.reader == reader]
        if found:
            return found[0]
        await node.ledger.changed()


async def read_as(node: Node, record_id: bytes, who: nacl.signing.SigningKey) -> bytes:
    purpose = Purpose.PATRQT
    permits = [node.records.permit_as(record_id, who, purpose)]
    handle = await node.records.open(record_id, bytes(who.verify_key), permits)
    key = open_sealed_key(handle.grant.sealed_key, who)
    return b"".join([c async for c in node.records.plaintext(handle, key)])


async def test_a_read_reaches_the_owners_ledger_with_its_purpose_logged_by_the_reader_node(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        person = nacl.signing.SigningKey(os.urandom(32))
        await owner.records.grant(record_id, bytes(person.verify_key))
        reader = cluster.nodes[4]
        await knows_grant(reader, record_id, bytes(person.verify_key))
        assert await read_as(reader, record_id, person) == DATA
        seen = await a_read(owner, record_id, bytes(person.verify_key))
        assert (seen.node, seen.purpose) == (reader.public_key, Purpose.PATRQT)
        assert reader.public_key in seen.loggers
        nursery.cancel_scope.cancel()


async def test_a_reader_node_that_never_logs_is_still_in_the_audit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The dishonest reader's node skips its entry; the holders that served it log it."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        person = nacl.signing.SigningKey(os.urandom(32))
        await owner.records.grant(record_id, bytes(person.verify_key))
        held = holders_of(cluster, record_id)
        reader = next(n for n in cluster.nodes[1:] if n not in held)  # placement is random
        reader.records.log_read = None  # logs nothing
        await knows_grant(reader, record_id, bytes(person.verify_key))
        assert await read_as(reader, record_id, person) == DATA
        seen = await a_read(owner, record_id, bytes(person.verify_key))
        assert reader.public_key not in seen.loggers
        holders = {n.public_key for n in holders_of(cluster, record_id)}
        assert seen.loggers and set(seen.loggers) <= holders
        assert seen.node == reader.public_key  # the statement names the node that read
        nursery.cancel_scope.cancel()


async def test_a_flood_of_one_read_is_witnessed_once_per_holder(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        member = cluster.nodes[5]
        await owner.records.grant(record_id, member.public_key)
        await knows_grant(member, record_id, member.public_key)
        holder = next(n for n in holders_of(cluster, record_id) if n is not member)
        await knows_grant(holder, record_id, member.public_key)
        raw = member.records.permit_as(record_id, member.parts.identity)
        request = dataclasses.replace(first_block(holder, record_id), permit=raw)
        for _ in range(200):
            answer = await member.port.call(holder.contact, request, 5.0)
            assert isinstance(answer, BlocksFound) and all(answer.blocks)
        seen = await a_read(holder, record_id, member.public_key)
        assert seen.loggers == (holder.public_key,)
        await trio.sleep(2 * holder.witness.grace)  # autojump: a second grace passes
        logged = [
            e
            for e in holder.ledger.book.entries()
            if isinstance(e.body, AccessBody) and e.author == holder.public_key
        ]
        assert len(logged) == 1 and holder.witness.witnessed == 1
        nursery.cancel_scope.cancel()


def _signed(signer: nacl.signing.SigningKey, fields: list[object], tag: bytes) -> bytes:
    signature = signer.sign(tag + msgpack.packb(fields, use_bin_type=True)).signature
    return bytes(msgpack.packb([*fields, signature], use_bin_type=True))


async def test_a_holder_refuses_reads_without_a_valid_access_statement(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A granted member, well signed, is refused for a version 1 permit, an unknown
    purpose, or a statement replayed from another node; nothing is witnessed."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        member = cluster.nodes[5]
        await owner.records.grant(record_id, member.public_key)
        holder = next(n for n in holders_of(cluster, record_id) if n is not member)
        await knows_grant(holder, record_id, member.public_key)
        me, now, key = member.public_key, member.clock_ms(), member.parts.identity
        old = _signed(key, [1, record_id, me, me, now], b"medvault/read-permit/v1")
        odd = _signed(key, [2, record_id, me, me, now, "SPYING", bytes(16)],
                      b"medvault/read-permit/v2")  # fmt: skip
        replayed = owner.records.permit_as(record_id, owner.parts.identity)  # owner's node's
        base = first_block(holder, record_id)
        cases = {
            ErrorCode.OLD_PERMIT: old,
            ErrorCode.FORBIDDEN: odd,
        }
        for code, raw in cases.items():
            assert await refusal(member, holder, dataclasses.replace(base, permit=raw)) == code
        replay = dataclasses.replace(base, permit=replayed)
        assert await refusal(member, holder, replay) == ErrorCode.FORBIDDEN
        assert permit.decode(replayed).node == owner.public_key
        await trio.sleep(2 * holder.witness.grace)
        assert not holder.ledger.state().reads_of(record_id)
        nursery.cancel_scope.cancel()
