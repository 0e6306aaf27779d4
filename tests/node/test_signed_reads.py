"""Holders serve a record's blocks only to its owner, a current grantee or a proven holder.

The honest reads (owner, grantee with a permit, repair by a holder) beside what a
member with the network key and a valid identity gains by asking falsely: no permit,
a forged one, another node's, a stale one, a revoked or expired grantee's, a deleted
record's, a repair read without holding anything, and a record of its own naming
the victim's blocks. Each gets no block, and the holder logs the offence once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import nacl.signing
import pytest
import trio

from node.assembly import Node
from node.logs import short_key
from node.net.errors import RemoteError, RequestError
from node.records.errors import RecordError
from node.records.fetch import BlockFetcher, TooFewShards
from node.sim.nodes import segments
from protocol.ledger.entries import GrantBody, RevokeBody, derive_record_id
from protocol.net.messages import ErrorCode
from protocol.records import permit
from protocol.records.holder_proof import bucket_of, proof_segment
from protocol.records.messages import (
    BlockRef,
    BlocksFound,
    FetchBlocks,
    GetHoldings,
    HolderProof,
    HoldingsFound,
    ShardsStored,
    StoreShards,
)
from storage.codec.crypt import open_sealed_key
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, knows_grant, read_all, small_config

DATA = os.urandom(150_000)  # three segments of 64 KiB


async def stored(cluster: Cluster, nursery: trio.Nursery, count: int = 6) -> tuple[Node, bytes]:
    await cluster.add_many(nursery, count, small_config())
    owner = cluster.nodes[0]
    result = await owner.records.put(segments(DATA, 64 * 1024), metadata=RecordMetadata())
    for node in cluster.nodes:  # every ledger knows the record before anyone reads
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    return owner, result.record_id


def other_holder(cluster: Cluster, record_id: bytes, *, besides: Node) -> Node:
    return next(n for n in holders_of(cluster, record_id) if n is not besides)


async def lose_a_holder(cluster: Cluster, record_id: bytes, *, keep: list[Node]) -> None:
    """Crash a holder of the record not in `keep`, and let every kept holder survey it
    (as its next pass would): the record needs repair in their views."""
    lost = next(n for n in holders_of(cluster, record_id) if n not in keep)
    cluster.crash(lost)
    for node in keep:
        if node.shards.holdings.indices(record_id)[0]:
            assert not (await node.repairer.survey(record_id, verify=False)).health.healthy


def first_block(node: Node, record_id: bytes) -> FetchBlocks:
    index = node.shards.holdings.indices(record_id)[0][0]
    return FetchBlocks(record_id, (BlockRef(0, index),))


async def refusal(asker: Node, holder: Node, message: FetchBlocks) -> str:
    """The holder's error code for the request (failing the test if it served a block)."""
    try:
        answer = await asker.port.call(holder.contact, message, 5.0)
    except RemoteError as exc:
        return exc.code
    assert isinstance(answer, BlocksFound)
    assert not any(answer.blocks), "a block was served"
    return "nothing served"


async def revoked_everywhere(cluster: Cluster, record_id: bytes, grantee: bytes) -> None:
    """Return once every ledger holds the revoke of the grantee's grant."""

    def revoked(node: Node) -> bool:
        return any(
            isinstance(e.body, RevokeBody) and (e.record_id, e.body.grantee) == (record_id, grantee)
            for e in node.ledger.book.entries()
        )

    for node in cluster.nodes:
        while not revoked(node):
            await node.ledger.changed()


async def test_the_owner_and_a_current_grantee_read_through_any_node(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        assert await read_all(owner, record_id) == DATA
        clinician = nacl.signing.SigningKey(os.urandom(32))
        await owner.records.grant(record_id, bytes(clinician.verify_key))
        reader = cluster.nodes[4]
        await knows_grant(reader, record_id, bytes(clinician.verify_key))
        # Read at once: holders whose ledgers lack the grant yet refuse, and the reader
        # asks again until they have it.
        permits = [reader.records.permit_as(record_id, clinician)]
        handle = await reader.records.open(record_id, bytes(clinician.verify_key), permits)
        key = open_sealed_key(handle.grant.sealed_key, clinician)
        data = b"".join([c async for c in reader.records.plaintext(handle, key)])
        assert data == DATA
        nursery.cancel_scope.cancel()


async def test_a_read_as_someone_else_needs_their_permit_for_this_node(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        patient = nacl.signing.SigningKey(os.urandom(32))
        await owner.records.grant(record_id, bytes(patient.verify_key))
        reader = cluster.nodes[3]
        await knows_grant(reader, record_id, bytes(patient.verify_key))
        with pytest.raises(RecordError, match="needs a permit"):
            await reader.records.open(record_id, bytes(patient.verify_key))
        elsewhere = [cluster.nodes[2].records.permit_as(record_id, patient)]
        with pytest.raises(RecordError, match="this node"):
            await reader.records.open(record_id, bytes(patient.verify_key), elsewhere)
        nursery.cancel_scope.cancel()


async def test_requests_without_a_good_permit_get_no_block_and_are_logged_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="medvault.reads")
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery, count=7)  # two hold nothing
        member = next(
            n for n in cluster.nodes if not n.shards.holdings.records() and n is not owner
        )
        holder = other_holder(cluster, record_id, besides=owner)
        base = first_block(holder, record_id)
        now = owner.clock_ms()

        def signed(signer: nacl.signing.SigningKey, node: bytes, at: int) -> bytes:
            return permit.sign(signer, record_id, node, at, read_id=bytes(16))

        own = signed(member.parts.identity, member.public_key, now)
        owners = signed(owner.parts.identity, owner.public_key, now)
        forged = owners[:-1] + bytes([owners[-1] ^ 1])
        claimed = signed(member.parts.identity, owner.public_key, now)  # as another node
        stale = signed(owner.parts.identity, member.public_key, now - permit.LIFETIME_MS - 1)
        cases = {
            "no permit": (base, ErrorCode.FORBIDDEN),
            "forged signature": (dataclasses.replace(base, permit=forged), ErrorCode.FORBIDDEN),
            "another node's permit": (
                dataclasses.replace(base, permit=owners),
                ErrorCode.FORBIDDEN,
            ),
            "naming another node": (dataclasses.replace(base, permit=claimed), ErrorCode.FORBIDDEN),
            "stale": (dataclasses.replace(base, permit=stale), ErrorCode.FORBIDDEN),
            "never granted": (dataclasses.replace(base, permit=own), ErrorCode.NO_GRANT),
        }
        for name, (message, code) in cases.items():
            for _ in range(50):  # a flood of the same offence
                assert await refusal(member, holder, message) == code, name
        lines = [
            r
            for r in caplog.records
            if r.getMessage() == "read refused" and r.fields["peer"] == short_key(member.public_key)  # type: ignore[attr-defined]
        ]
        per_reason = {(r.fields["reason"], r.fields["peer"]) for r in lines}  # type: ignore[attr-defined]
        assert len(lines) == len(per_reason) == 2  # forbidden and no_grant, once each
        # The owner's own permit, from its own node, is served.
        answer = await owner.port.call(
            holder.contact, dataclasses.replace(base, permit=owners), 5.0
        )
        assert isinstance(answer, BlocksFound) and all(answer.blocks)
        nursery.cancel_scope.cancel()


async def test_a_grantee_revoked_before_its_first_read_gets_no_block(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        grantee = cluster.nodes[5]
        await owner.records.grant(record_id, grantee.public_key)
        await owner.records.revoke(record_id, grantee.public_key)
        await revoked_everywhere(cluster, record_id, grantee.public_key)
        # It still has the sealed key (the grant entry stays in every ledger)...
        (grant,) = [
            e.body
            for e in grantee.ledger.book.entries()
            if isinstance(e.body, GrantBody) and e.body.grantee == grantee.public_key
        ]
        assert len(open_sealed_key(grant.sealed_key, grantee.parts.identity)) == 32
        # ...but no holder serves it a block, even asking as a reader would.
        manifest = await grantee.records.manifest_of(grantee.records.lookup(record_id))
        holders = {
            i: [h.contact]
            for h in await grantee.records.holdings_of(record_id)
            for i in h.found.complete
        }
        fetcher = BlockFetcher(
            port=grantee.port,
            manifest=manifest,
            holders=holders,
            latency=grantee.records.latency,
            timeout=5.0,
            permit=grantee.records.own_permits(record_id),
            lag_retries=2,
        )
        with pytest.raises(TooFewShards, match="no_grant"):
            await fetcher.fetch(range(manifest.segment_count), manifest.k)
        assert await read_all(owner, record_id) == DATA
        nursery.cancel_scope.cancel()


async def test_an_expired_grant_and_a_deleted_record_serve_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        grantee = cluster.nodes[5]
        holder = other_holder(cluster, record_id, besides=owner)
        # The nodes' wall clock is real: leave the grant call time to check the expiry
        # is still ahead on a busy machine (it was 1 ms and flaked), then wait it out.
        expires = owner.clock_ms() + 250
        await owner.records.grant(record_id, grantee.public_key, expires)
        while (record_id, grantee.public_key) not in holder.ledger.state().grants:
            await holder.ledger.changed()
        while holder.clock_ms() <= expires:  # the wall clock passes the expiry
            await trio.lowlevel.checkpoint()
        asked = dataclasses.replace(
            first_block(holder, record_id),
            permit=permit.sign(
                grantee.parts.identity,
                record_id,
                grantee.public_key,
                grantee.clock_ms(),
                read_id=bytes(16),
            ),
        )
        assert await refusal(grantee, holder, asked) == ErrorCode.NO_GRANT
        owners = dataclasses.replace(
            asked,
            permit=permit.sign(
                owner.parts.identity,
                record_id,
                owner.public_key,
                owner.clock_ms(),
                read_id=bytes(16),
            ),
        )
        await owner.records.delete(record_id)
        while record_id not in holder.ledger.state().tombstones:
            await holder.ledger.changed()
        # Refused, or (once the holder swept its shards) nothing left to serve.
        assert await refusal(owner, holder, owners) in (ErrorCode.NO_GRANT, "nothing served")
        nursery.cancel_scope.cancel()


async def test_repair_reads_need_a_proof_of_holding_an_index(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery, count=7)  # two hold nothing
        holder = other_holder(cluster, record_id, besides=owner)
        prover = other_holder(cluster, record_id, besides=holder)
        member = next(
            n for n in cluster.nodes if not n.shards.holdings.records() and n is not owner
        )
        manifest = holder.shards.manifest(record_id)
        assert manifest is not None
        base = first_block(holder, record_id)
        # A repair read, of a record the holder sees short of an index.
        await lose_a_holder(cluster, record_id, keep=[owner, holder, prover])
        # An honest holder's proof: its block at the segment this holder picks now.
        proof = await prover.shards.holder_proof(
            manifest, holder.public_key, bucket_of(prover.clock_ms())
        )
        assert proof is not None
        answer = await prover.port.call(holder.contact, dataclasses.replace(base, proof=proof), 5.0)
        assert isinstance(answer, BlocksFound) and all(answer.blocks)
        # A non-holder: a made-up block, or a real one at a segment not asked now
        # (a reader who kept one block cannot answer for every holder and time).
        fake = HolderProof(proof.index, proof.segment, os.urandom(len(proof.block)))
        assert await refusal(member, holder, dataclasses.replace(base, proof=fake)) == (
            ErrorCode.FORBIDDEN
        )
        bucket = bucket_of(holder.clock_ms())
        asked = {
            proof_segment(holder.public_key, record_id, manifest.segment_count, b)
            for b in (bucket - 1, bucket, bucket + 1)
        }
        others = [s for s in range(manifest.segment_count) if s not in asked]
        if others:  # three segments and three buckets may cover them all
            block = prover.shards.store.get(manifest.block_hash(others[0], proof.index))
            wrong = HolderProof(proof.index, others[0], block)
            assert await refusal(member, holder, dataclasses.replace(base, proof=wrong)) == (
                ErrorCode.FORBIDDEN
            )
        nursery.cancel_scope.cancel()


async def test_a_record_naming_a_victims_blocks_is_not_served_them(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        attacker = cluster.nodes[5]
        fake_nonce = os.urandom(16)  # a record of its own: it may upload it
        fake_id = derive_record_id(attacker.public_key, fake_nonce)
        for holder in holders_of(cluster, record_id):
            if holder is attacker:
                continue
            manifest = holder.shards.manifest(record_id)
            assert manifest is not None
            fake = dataclasses.replace(manifest, record_id=fake_id).encode()
            index = holder.shards.holdings.indices(record_id)[0][0]
            reply = await attacker.port.call(
                holder.contact, StoreShards(fake_id, fake, index, 0, (), True, fake_nonce), 5.0
            )
            assert isinstance(reply, ShardsStored)
            # It is the uploader of its unrecorded record, and owns it: still no block.
            ask = FetchBlocks(
                fake_id,
                tuple(BlockRef(s, index) for s in range(manifest.segment_count)),
                permit.sign(
                    attacker.parts.identity, fake_id, attacker.public_key, 0, read_id=bytes(16)
                ),
            )
            assert await refusal(attacker, holder, ask) == "nothing served"
        assert await read_all(owner, record_id) == DATA
        nursery.cancel_scope.cancel()


async def test_an_audit_is_a_read_refused_ones_blame_no_holder(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery, count=7)  # two hold nothing
        member = next(
            n for n in cluster.nodes if not n.shards.holdings.records() and n is not owner
        )
        by_owner = await owner.repairer.survey(record_id, verify=False, audit=True)
        assert by_owner.health.healthy and by_owner.audited_bytes > 0
        # A node that may not read the record cannot audit it: every holder refuses,
        # none is blamed or avoided, and the claims count as stated.
        assert not member.records.permitted(record_id) and owner.records.permitted(record_id)
        by_member = await member.repairer.survey(record_id, verify=False, audit=True)
        assert by_member.audited_bytes == 0 and by_member.health.healthy
        # ... and says so: every claim it counted is marked unaudited (the owner's none).
        assert by_member.health.unaudited == by_owner.health.holders
        assert not by_owner.health.unaudited
        assert not any(member.records.reach.distrusted(n) for n in by_owner.contacts)
        # A holder that refuses a node that may read it proves nothing: its claim
        # does not count (a holder keeping nothing gains nothing by refusing).
        holder = other_holder(cluster, record_id, besides=owner)

        async def refuse(*args: object) -> None:
            raise RequestError(ErrorCode.FORBIDDEN, "no")

        holder.shards.gate.admit = refuse  # type: ignore[method-assign,assignment]
        again = await owner.repairer.survey(record_id, verify=False, audit=True)
        assert not again.health.healthy
        assert not owner.records.reach.distrusted(holder.public_key)
        nursery.cancel_scope.cancel()


async def test_a_revoked_grantee_node_that_holds_an_index_may_not_repair_read(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Its holder proof is good, but the holder's ledger says its grant ended."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery, count=7)
        holder = other_holder(cluster, record_id, besides=owner)
        grantee = next(n for n in holders_of(cluster, record_id) if n not in (owner, holder))
        manifest = holder.shards.manifest(record_id)
        assert manifest is not None
        base = first_block(holder, record_id)

        async def proof_read() -> object:
            proof = await grantee.shards.holder_proof(
                manifest, holder.public_key, bucket_of(grantee.clock_ms())
            )
            assert proof is not None
            return await grantee.port.call(
                holder.contact, dataclasses.replace(base, proof=proof), 5.0
            )

        await owner.records.grant(record_id, grantee.public_key)
        await knows_grant(holder, record_id, grantee.public_key)
        await lose_a_holder(cluster, record_id, keep=[owner, holder, grantee])
        assert isinstance(await proof_read(), BlocksFound)  # granted: a repairer as any
        await owner.records.revoke(record_id, grantee.public_key)
        while holder.ledger.state().grant_for(record_id, grantee.public_key, 0) is not None:
            await holder.ledger.changed()
        with pytest.raises(RemoteError) as refused:
            await proof_read()
        assert refused.value.code == ErrorCode.NO_GRANT
        nursery.cancel_scope.cancel()


async def test_a_holder_reads_others_indices_only_while_the_record_needs_repair(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A holder colluding with a revoked grantee proves it holds an index and asks the
    other holders for theirs: while the record is healthy it gets no block; hiding its
    own claim changes nothing; once a holder is really lost, the same reads are served
    (repair needs them)."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery, count=7)
        colluder = other_holder(cluster, record_id, besides=owner)
        others = [n for n in holders_of(cluster, record_id) if n not in (owner, colluder)]
        manifest = colluder.shards.manifest(record_id)
        assert manifest is not None

        async def read_whole(holder: Node) -> object:
            proof = await colluder.shards.holder_proof(
                manifest, holder.public_key, bucket_of(colluder.clock_ms())
            )
            assert proof is not None
            index = holder.shards.holdings.indices(record_id)[0][0]
            wanted = tuple(BlockRef(s, index) for s in range(manifest.segment_count))
            ask = FetchBlocks(record_id, wanted, None, proof)
            try:
                return await colluder.port.call(holder.contact, ask, 5.0)
            except RemoteError as exc:
                return exc.code

        holder = others[0]
        assert holder.views.seen(record_id) is None  # it never surveyed the record yet
        assert await read_whole(holder) == ErrorCode.NOT_NEEDED
        for _ in range(100):  # ... but it looks now (upkeep, in the background)
            if holder.views.seen(record_id) is not None:
                break
            await trio.sleep(1)
        seen = holder.views.seen(record_id)
        assert seen is not None and seen.healthy
        assert await read_whole(holder) == ErrorCode.NOT_NEEDED
        # Not even one block: audits read by permit, and blocks handed out one by one
        # would let it gather k of a segment from k-1 holders.
        index = holder.shards.holdings.indices(record_id)[0][0]
        proof = await colluder.shards.holder_proof(
            manifest, holder.public_key, bucket_of(colluder.clock_ms())
        )
        one = FetchBlocks(record_id, (BlockRef(0, index),), None, proof)
        assert await refusal(colluder, holder, one) == ErrorCode.NOT_NEEDED

        # It hides its own index from the holders' surveys: its proof counts it anyway.
        async def holds_nothing(message: GetHoldings, caller: object) -> HoldingsFound:
            return HoldingsFound((), (), ())

        colluder.dispatcher._routes[GetHoldings] = holds_nothing
        seen = (await holder.repairer.survey(record_id, verify=False)).health
        assert not seen.healthy and colluder.public_key not in seen.holders
        assert await read_whole(holder) == ErrorCode.NOT_NEEDED

        # A real loss: the next survey (a pass, or one a repair read asks for) sees it,
        # and reads for repair are served whole.
        cluster.crash(others[1])
        await holder.repairer.survey(record_id, verify=False)
        whole = await read_whole(holder)
        assert isinstance(whole, BlocksFound) and all(whole.blocks)
        nursery.cancel_scope.cancel()
