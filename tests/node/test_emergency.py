"""Break-glass through whole nodes (in-memory network, certified sites): policy, cap,
refusals, the approval queue's bounds, review and sign-off, and expiry at the holders."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import trio

from node.assembly import Node
from node.config.emergency import EmergencyConfig
from node.records.errors import RecordError
from node.sim.nodes import segments
from protocol.emergency.messages import EmergencyAsk
from protocol.ledger.entries import EmergencyBody, EntryType
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, read_all, small_config
from tests.protocol.keys import signing_key

AUTHORITY = signing_key("emergency authority")
DATA = b"allergy: penicillin " * 2000
REASON = "unconscious after a car crash"


async def hospitals(nursery: trio.Nursery, tmp_path: Path, **policy: object) -> list[Node]:
    """A (owner, with `policy`), B (site hospital-b), C (site hospital-c), two more holders."""
    cluster = Cluster(tmp_path)
    config = small_config()
    owner_config = dataclasses.replace(config, emergency=EmergencyConfig(**policy))  # type: ignore[arg-type]
    nodes = [await cluster.add(nursery, owner_config, site="hospital-a", authority=AUTHORITY)]
    for site in ("hospital-b", "hospital-c", "hospital-d", "hospital-e"):
        nodes.append(await cluster.add(nursery, config, site=site, authority=AUTHORITY))
    return nodes


async def put(owner: Node) -> bytes:
    result = await owner.records.put(segments(DATA, 64 * 1024), metadata=RecordMetadata())
    return result.record_id


async def test_an_allowed_site_is_granted_capped_reads_and_the_access_is_flagged_until_signed_off(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        a, b, c, *_ = await hospitals(
            nursery, tmp_path, allowed_sites=("hospital-b",), max_duration=60.0
        )
        record_id = await put(a)
        while record_id not in b.ledger.state().records:
            await b.ledger.changed()
        [outcome] = await b.emergency_asker.ask_all([record_id], REASON, 10 * 3_600_000)
        assert outcome.status == "granted"
        # Asked for ten hours, capped at the owner's one minute (rounded up to a second).
        assert outcome.expires_at - b.clock_ms() <= 62_000
        assert await read_all(b, record_id) == DATA
        [shown] = a.emergency.review(include_signed=False)
        assert shown.reason == REASON and shown.site == "hospital-b"
        assert shown.access.body.requester == b.public_key
        # Asking again while the grant lasts writes nothing new.
        entries = len(a.ledger.book)
        [again] = await b.emergency_asker.ask_all([record_id], REASON, 60_000)
        assert again.status == "granted" and len(a.ledger.book) == entries
        # C is not allowed: refused with a code, and gets no grant.
        [refused] = await c.emergency_asker.ask_all([record_id], REASON, 60_000)
        assert (refused.status, refused.code) == ("refused", "not_allowed")
        assert a.ledger.state().grant_for(record_id, c.public_key, a.clock_ms()) is None
        # Sign-off: an entry by the owner; review stops listing it unless asked for all.
        signoff = await a.emergency.signoff(shown.access.entry.hash.hex()[:12], "checked")
        assert signoff.type is EntryType.SIGNOFF
        assert a.emergency.review(include_signed=False) == []
        [signed] = a.emergency.review(include_signed=True)
        assert signed.note == "checked"
        with pytest.raises(RecordError, match="signed off already"):
            await a.emergency.signoff(shown.access.entry.hash.hex(), "")
        nursery.cancel_scope.cancel()


async def test_a_requester_that_already_holds_a_grant_is_refused_and_keeps_it(
    tmp_path: Path,
) -> None:
    """An emergency grant would replace the ordinary one (one grant per record and
    grantee), so asking under break-glass must never shorten access B already has."""
    async with trio.open_nursery() as nursery:
        a, b, *_ = await hospitals(
            nursery, tmp_path, allowed_sites=("hospital-b",), max_duration=60.0
        )
        record_id = await put(a)
        await a.records.grant(record_id, b.public_key)
        while b.ledger.state().grant_for(record_id, b.public_key, b.clock_ms()) is None:
            await b.ledger.changed()
        entries = len(a.ledger.book)
        [outcome] = await b.emergency_asker.ask_all([record_id], REASON, 60_000)
        assert (outcome.status, outcome.code) == ("refused", "already_granted")
        assert len(a.ledger.book) == entries and a.emergency.review(include_signed=True) == []
        kept = a.ledger.state().grant_for(record_id, b.public_key, a.clock_ms())
        assert kept is not None and kept.expires_at == 0
        assert await read_all(b, record_id) == DATA
        nursery.cancel_scope.cancel()


async def test_after_expiry_the_holders_refuse_the_requesters_reads(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await hospitals(nursery, tmp_path, allowed_sites=("hospital-b",), max_duration=30.0)
        a, b = nodes[0], nodes[1]
        record_id = await put(a)
        while record_id not in b.ledger.state().records:
            await b.ledger.changed()
        [outcome] = await b.emergency_asker.ask_all([record_id], REASON, 30_000)
        assert outcome.status == "granted"
        for node in nodes:  # every holder knows the grant before the clock moves
            while node.ledger.state().grant_for(record_id, b.public_key, node.clock_ms()) is None:
                await node.ledger.changed()
        # Every node but B lives past the expiry: B's own check still passes, the holders'
        # grant checks refuse its blocks.
        for node in nodes:
            if node is not b:
                node.parts.wall_clock = lambda: time.time() + 120.0
        with pytest.raises(Exception):  # noqa: B017 (TooFewShards, or a refused read)
            await read_all(b, record_id)
        nursery.cancel_scope.cancel()


async def test_a_flood_of_requests_is_bounded_by_the_queue_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        a, b, c, *_ = await hospitals(
            nursery,
            tmp_path,
            allowed_sites=("hospital-b",),
            require_approval=True,
            max_pending=3,
            max_pending_per_requester=2,
        )
        records = [await put(a) for _ in range(3)]
        for record_id in records:
            while record_id not in b.ledger.state().records:
                await b.ledger.changed()
        # B asks a thousand times: two records queued, the rest refused; nothing granted.
        answers = [
            await b.port.call(a.contact, EmergencyAsk(records[i % 3], REASON, 60_000), 5.0)
            for i in range(1000)
        ]
        statuses = [getattr(x, "status", "") for x in answers]
        assert statuses.count("queued") == 1000 - statuses.count("refused")
        assert len(a.emergency.queue) == 2
        assert {
            getattr(x, "code", "") for x in answers if getattr(x, "status", "") == "refused"
        } == {"queue_full"}
        assert not [e for e in a.ledger.book.entries() if isinstance(e.body, EmergencyBody)]
        # C (not allowed) a thousand times: refused, logged once.
        for _ in range(1000):
            await c.port.call(a.contact, EmergencyAsk(records[0], REASON, 60_000), 5.0)
        # Two thousand refusals, two lines: one per requester and code (queue_full for B,
        # not_allowed for C).
        lines = [r for r in caplog.records if r.getMessage() == "emergency access refused"]
        assert len(lines) == 2
        assert REASON not in caplog.text  # reasons never reach the log
        # The operator approves one, denies the other.
        first, second = a.emergency.queue.items()
        entries = await a.emergency.approve(first.request_id)
        assert isinstance(entries[-1].body, EmergencyBody)
        a.emergency.deny(second.request_id)
        assert len(a.emergency.queue) == 0
        nursery.cancel_scope.cancel()
