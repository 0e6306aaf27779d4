"""Stealth grants on whole nodes: put and grant to an address, read as the grant's key P,
a patient's share and revoke from her own feed, and what a grantee without her rights
or a revoked one gets (nothing written, no block served)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from node.assembly import Node
from node.control.ops import ControlOps
from node.ledger.service import LedgerError
from node.records.errors import RecordError
from node.records.fetch import BlockFetcher, TooFewShards
from node.sim.nodes import segments
from protocol.control.commands import FeedHead, StealthGrants
from protocol.ledger import stealth
from protocol.ledger.entries import (
    RevokeBody,
    StealthGrantBody,
    grant_context,
    sign_entry,
)
from protocol.ledger.timestamps import entry_time
from protocol.privacy import OneTimeKey, Opened, PersonKey, StealthGrant, make_grant, open_grant
from protocol.records import permit
from storage.codec.crypt import SegmentCipher
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, knows_grant, read_all, small_config

DATA = os.urandom(100_000)


async def stored_for(
    cluster: Cluster, nursery: trio.Nursery, patient: PersonKey
) -> tuple[Node, bytes]:
    """A record put with the patient's address (a co-owner stealth grant), known everywhere."""
    await cluster.add_many(nursery, 6, small_config())
    owner = cluster.nodes[0]
    result = await owner.records.put(
        segments(DATA, 64 * 1024),
        metadata=RecordMetadata(),
        grantees=[patient.address.to_bytes()],
    )
    for node in cluster.nodes:
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    return owner, result.record_id


def grants_to(node: Node, person: PersonKey, record_id: bytes) -> list[tuple[int, Opened]]:
    """(index, opened grant) of each stealth grant of the record to `person` here."""
    found = []
    for entry in node.ledger.stealth.entries:
        body = entry.body
        assert isinstance(body, StealthGrantBody)
        if body.record_id != record_id:
            continue
        try:
            opened = open_grant(person, StealthGrant.from_bytes(body.grant), body.context)
        except Exception:
            continue
        found.append((body.index, opened))
    return found


async def read_as(reader: Node, record_id: bytes, opened: Opened) -> bytes:
    """Read through `reader` as the grant's one-time key, decrypting here (as the CLI does)."""
    key = opened.one_time_key
    permits = [permit.sign(key, record_id, reader.public_key, reader.clock_ms(), read_id=bytes(16))]
    handle = await reader.records.open(record_id, key.public, permits)
    cipher = SegmentCipher(opened.record_key, record_id)
    manifest = handle.manifest
    size = manifest.contents(cipher).size  # the manifest shows the padded size only
    out = [
        manifest.record_part(
            segment, cipher.decrypt_segment(segment, manifest.is_last(segment), ciphertext), size
        )
        async for segment, ciphertext in handle.fetcher.ciphertext()
    ]
    return b"".join(out)


async def submit_as(node: Node, key: OneTimeKey, body: StealthGrantBody | RevokeBody) -> None:
    """What a wallet does: sign at the head of P's feed, then submit through a node."""
    head = node.ledger.book.head_entry(key.public)
    seq, prev = (1, b"") if head is None else (head.seq + 1, head.hash)
    stamp = entry_time(node.clock_ms(), 0 if head is None else head.timestamp)
    entry = sign_entry(key, seq, prev, stamp, body)
    await node.records.submit(entry.raw)


async def test_a_patient_reads_as_her_one_time_key_and_her_key_appears_nowhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    alice = PersonKey(os.urandom(32))
    async with trio.open_nursery() as nursery:
        _owner, record_id = await stored_for(cluster, nursery, alice)
        reader = cluster.nodes[4]
        ((index, opened),) = grants_to(reader, alice, record_id)
        assert index == 0
        grant = reader.ledger.state().grant_for(record_id, opened.one_time_key.public, 0)
        assert grant is not None and grant.patient
        assert await read_as(reader, record_id, opened) == DATA
        for node in cluster.nodes:
            for entry in node.ledger.book.entries():
                assert alice.spend_public not in entry.raw
                assert alice.address.view_public not in entry.raw
        nursery.cancel_scope.cancel()


async def test_grant_to_an_address_takes_the_next_index_and_revoke_names_the_grant(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    alice, doctor = PersonKey(os.urandom(32)), PersonKey(os.urandom(32))
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored_for(cluster, nursery, alice)
        entry = await owner.records.grant(record_id, doctor.address.to_bytes())
        assert isinstance(entry.body, StealthGrantBody) and entry.body.index == 1
        assert not entry.body.patient
        reader = cluster.nodes[5]
        p = entry.body.one_time
        await knows_grant(reader, record_id, p)
        ((_, opened),) = grants_to(reader, doctor, record_id)
        assert await read_as(reader, record_id, opened) == DATA
        await owner.records.revoke(record_id, p)
        for node in cluster.nodes:
            while node.ledger.state().grant_for(record_id, p, node.clock_ms()) is not None:
                await node.ledger.changed()
        with pytest.raises(RecordError, match="no grant"):
            await read_as(reader, record_id, opened)
        with pytest.raises(RecordError, match="not a valid"):  # a bad address: no entry
            await owner.records.grant(record_id, b"\x01A" + bytes(64))
        nursery.cancel_scope.cancel()


async def test_a_patient_shares_and_revokes_and_honest_holders_follow(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    alice, insurer = PersonKey(os.urandom(32)), PersonKey(os.urandom(32))
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored_for(cluster, nursery, alice)
        through = cluster.nodes[3]
        ((_, hers),) = grants_to(through, alice, record_id)
        ops = ControlOps(through, started=0.0)
        head = await ops.feed_head(FeedHead(hers.one_time_key.public, record_id))
        index = head.next_index
        context = grant_context(record_id, index)
        share = make_grant(insurer.address, hers.record_key, os.urandom(32), context)
        await submit_as(
            through,
            hers.one_time_key,
            StealthGrantBody(record_id, share.to_bytes(), index, 0, False),
        )
        reader = cluster.nodes[5]
        await knows_grant(reader, record_id, share.one_time)
        ((_, opened),) = grants_to(reader, insurer, record_id)
        assert await read_as(reader, record_id, opened) == DATA
        await submit_as(through, hers.one_time_key, RevokeBody(record_id, share.one_time))
        for node in cluster.nodes:
            while node.ledger.state().grant_for(record_id, share.one_time, 0) is not None:
                await node.ledger.changed()
        # An honest holder refuses the insurer's permit now, whatever node asks.
        manifest = await reader.records.manifest_of(reader.records.lookup(record_id))
        holders = {
            i: [h.contact] for h in await reader.records.holdings_of(record_id)
            for i in h.found.complete
        }  # fmt: skip
        key = opened.one_time_key
        fetcher = BlockFetcher(
            port=reader.port,
            manifest=manifest,
            holders=holders,
            latency=reader.records.latency,
            timeout=5.0,
            permit=lambda: permit.sign(
                key, record_id, reader.public_key, reader.clock_ms(), read_id=bytes(16)
            ),
            lag_retries=1,
        )
        with pytest.raises(TooFewShards, match="no_grant"):
            await fetcher.fetch(range(manifest.segment_count), manifest.k)
        assert await read_all(owner, record_id) == DATA
        nursery.cancel_scope.cancel()


async def test_a_reader_who_is_no_patient_cannot_share_or_revoke_through_a_node(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    alice, bob = PersonKey(os.urandom(32)), PersonKey(os.urandom(32))
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored_for(cluster, nursery, alice)
        entry = await owner.records.grant(record_id, bob.address.to_bytes())
        node = cluster.nodes[2]
        await knows_grant(node, record_id, entry.body.one_time)  # type: ignore[union-attr]
        ((_, his),) = grants_to(node, bob, record_id)
        ((_, hers),) = grants_to(node, alice, record_id)
        before = len(node.ledger.book)
        index = node.ledger.stealth.next_index(record_id)
        share = make_grant(
            bob.address, his.record_key, os.urandom(32), grant_context(record_id, index)
        )
        body = StealthGrantBody(record_id, share.to_bytes(), index, 0, False)
        with pytest.raises(LedgerError, match=stealth.NOT_CO_OWNER):
            await submit_as(node, his.one_time_key, body)
        revoke = RevokeBody(record_id, hers.one_time_key.public)
        with pytest.raises(LedgerError, match=stealth.REVOKER_NOT_CO_OWNER):
            await submit_as(node, his.one_time_key, revoke)
        assert len(node.ledger.book) == before  # nothing written, nothing gossiped
        nursery.cancel_scope.cancel()


async def test_the_wallet_listing_pages_by_cursor(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    alice = PersonKey(os.urandom(32))
    others = [PersonKey(os.urandom(32)) for _ in range(4)]
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored_for(cluster, nursery, alice)
        for person in others:
            await owner.records.grant(
                record_id, person.address.to_bytes(), owner.clock_ms() + 10**9
            )
        ops = ControlOps(owner, started=0.0)
        first = await ops.stealth_grants(StealthGrants(0, limit=2))
        assert [r.index for r in first.rows] == [0, 1] and first.cursor == 2 and first.total == 5
        rest = await ops.stealth_grants(StealthGrants(first.cursor, limit=1000))
        assert [r.index for r in rest.rows] == [2, 3, 4] and rest.cursor == 5
        assert (await ops.stealth_grants(StealthGrants(rest.cursor))).rows == ()
        row = first.rows[0]
        assert row.patient and row.current and row.author == owner.public_key
        assert row.record_id == record_id and row.rejected is None and row.expires_at == 0
        assert first.rows[1].expires_at > 0 and not first.rows[1].patient
        only = await ops.stealth_grants(StealthGrants(0, record_id=b"x" * 32))
        assert only.rows == () and only.cursor == 5
        nursery.cancel_scope.cancel()
