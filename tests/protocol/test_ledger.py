from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import (
    MAX_ENTRY_SIZE,
    InvalidEntry,
    RecordBody,
    decode_entry,
    sign_entry,
)
from protocol.ledger.state import fold
from tests.protocol.ledger_helpers import Feed


def state_of(book: LedgerBook):  # type: ignore[no-untyped-def]
    return fold(book.entries(), book.flagged, book.violations)


def test_entry_round_trip_and_hash() -> None:
    owner = Feed("owner")
    owner.record("r1")
    entry = owner.entries[0]
    again = decode_entry(entry.raw)
    assert again == entry and again.hash == entry.hash and len(entry.hash) == 32


@pytest.mark.parametrize("position", [0, 10, 40, -1])
def test_forged_bytes_fail_verification(position: int) -> None:
    owner = Feed("owner")
    owner.record("r1")
    raw = bytearray(owner.entries[0].raw)
    raw[position] ^= 0x01
    with pytest.raises(InvalidEntry):
        decode_entry(bytes(raw))


def test_entry_signed_by_another_key_is_rejected() -> None:
    owner, mallory = Feed("owner"), Feed("mallory")
    record_id = owner.record("r1")
    honest = owner.grant(record_id, mallory.public)
    forged = sign_entry(mallory.key, honest.seq, honest.prev, honest.timestamp, honest.body)
    fields = msgpack.unpackb(forged.raw, raw=False)
    fields[1] = owner.public  # claims the owner as author
    with pytest.raises(InvalidEntry, match="bad signature"):
        decode_entry(msgpack.packb(fields, use_bin_type=True))


def test_truncated_oversize_and_malformed_entries() -> None:
    owner = Feed("owner")
    owner.record("r1")
    raw = owner.entries[0].raw
    with pytest.raises(InvalidEntry, match="malformed"):
        decode_entry(raw[:-5])
    with pytest.raises(InvalidEntry, match="oversize"):
        decode_entry(b"\x00" * (MAX_ENTRY_SIZE + 1))
    fields = msgpack.unpackb(raw, raw=False)
    fields[6] = dict(reversed(list(fields[6].items())))  # body keys reordered
    with pytest.raises(InvalidEntry, match="canonical"):
        decode_entry(msgpack.packb(fields, use_bin_type=True))


def test_replays_gaps_orphans_and_forks() -> None:
    owner = Feed("owner")
    record_id = owner.record("r1")
    first = owner.grant(record_id, b"g" * 32)
    second = owner.revoke(record_id, b"g" * 32)
    book = LedgerBook()
    result = book.ingest([second.raw])  # arrives before its predecessors
    assert result.orphaned == 1 and len(book) == 0
    result = book.ingest([owner.entries[0].raw, first.raw])
    assert [e.hash for e in result.accepted] == [owner.entries[0].hash, first.hash, second.hash]
    assert book.orphan_count == 0
    assert book.ingest([first.raw]).duplicates == 1  # replay: nothing changes
    # A second entry at seq 2 is a fork: kept as evidence, author flagged.
    fork = owner.grant(record_id, b"h" * 32, after=owner.entries[0])
    result = book.ingest([fork.raw])
    assert result.forked == [owner.public]
    assert set(book.flagged[owner.public]) == {first.hash, fork.hash}
    assert book.heads()[owner.public].seq == 3 and book.heads()[owner.public].count == 4
    assert book.orphan_floors() == {}
    assert book.head_entry(owner.public) == second


def test_orphans_are_bounded() -> None:
    owner = Feed("owner")
    record_id = owner.record("r1")
    later = [owner.grant(record_id, bytes([i]) * 32) for i in range(5)]
    book = LedgerBook(max_orphans=2)
    book.ingest([e.raw for e in later[1:]])  # none chains yet
    assert book.orphan_count == 2
    assert book.orphan_floors() == {owner.public: later[-2].seq}


def test_ownership_pending_and_rejections() -> None:
    owner, mallory, patient, nosy = Feed("owner"), Feed("mallory"), Feed("patient"), Feed("nosy")
    record_id = owner.record("r1")
    owner.grant(record_id, patient.public)
    mallory.grant(record_id, mallory.public)  # not the owner: breaks a feed rule
    mallory.tombstone(record_id)  # after the breach: not kept
    patient.attest(record_id)  # granted: fine
    nosy.attest(record_id)  # never granted: rejected, kept (a grant may come later)
    later = Feed("later")
    unknown = later.attest(b"u" * 32)  # record unknown: pending
    book = LedgerBook()
    for feed in (owner, mallory, patient, nosy, later):
        book.ingest(e.raw for e in feed.entries)
    assert mallory.entries[1].hash not in book and mallory.entries[0].hash in book
    assert book.frozen == {mallory.public: 1}
    assert book.flagged[mallory.public] == [mallory.entries[0].hash]
    state = state_of(book)
    assert set(state.records) == {record_id}
    assert state.grant_for(record_id, patient.public, now_ms=0) is not None
    assert state.grant_for(record_id, mallory.public, now_ms=0) is None
    assert record_id not in state.tombstones
    assert state.attestations[record_id] == (patient.public,)
    assert sorted(state.rejected.values()) == [
        "attester was never granted the record",
        "grant of a record not created earlier in its author's own feed",
    ]
    assert state.pending == {unknown.hash}
    assert mallory.public in state.flagged


def test_record_ids_bind_the_owner() -> None:
    owner, mallory = Feed("owner"), Feed("mallory")
    record_id = owner.record("r1")
    # Mallory claims the owner's record id in her own record entry.
    mallory.write(RecordBody(record_id, b"x" * 16, b"m" * 32, 1, 1, 1, mallory.public))
    book = LedgerBook()
    book.ingest(e.raw for e in (*mallory.entries, *owner.entries))
    state = state_of(book)
    assert state.records[record_id].owner == owner.public
    assert "not derived from the owner's key" in state.rejected[mallory.entries[0].hash]


def test_revocation_order_expiry_and_tombstone() -> None:
    owner = Feed("owner")
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    record_id = owner.record("r1")
    owner.grant(record_id, a)
    owner.revoke(record_id, a)
    owner.grant(record_id, b)
    owner.revoke(record_id, b)
    owner.grant(record_id, b)  # re-granted later: granted
    owner.grant(record_id, c, expires_at=5_000)
    book = LedgerBook()
    book.ingest(e.raw for e in owner.entries)
    state = state_of(book)
    assert state.grant_for(record_id, a, 0) is None
    assert state.grant_for(record_id, b, 0) is not None
    assert state.grant_for(record_id, c, 4_999) is not None
    assert state.grant_for(record_id, c, 5_000) is None
    owner.tombstone(record_id)
    book.ingest([owner.entries[-1].raw])
    assert state_of(book).grants == {} and record_id in state_of(book).tombstones


def test_concurrent_grant_and_revoke_on_a_fork_revoke_wins() -> None:
    owner = Feed("owner")
    record_id = owner.record("r1")
    base = owner.entries[-1]
    grant = owner.grant(record_id, b"g" * 32, after=base)  # written on one side
    revoke = owner.revoke(record_id, b"g" * 32, after=base)  # and on the other
    for order in ([grant, revoke], [revoke, grant]):
        book = LedgerBook()
        book.ingest([base.raw, *(e.raw for e in order)])
        state = state_of(book)
        assert state.grants == {}
        assert owner.public in state.flagged


@st.composite
def history(draw: st.DrawFn) -> list[bytes]:
    """A mixed multi-author history, valid and invalid, as raw entries."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    feeds = [Feed(f"author {i}") for i in range(3)]
    people = [Feed(f"person {i}") for i in range(2)]
    records: list[tuple[Feed, bytes]] = []
    for step in range(draw(st.integers(1, 25))):
        feed = rnd.choice(feeds)
        action = rnd.random()
        if action < 0.25 or not records:
            records.append((feed, feed.record(f"rec {step}")))
            continue
        owner, record_id = rnd.choice(records)
        actor = owner if rnd.random() < 0.8 else feed
        grantee = rnd.choice(people)
        if action < 0.55:
            actor.grant(record_id, grantee.public, expires_at=rnd.choice([0, 10**9]))
        elif action < 0.75:
            actor.revoke(record_id, grantee.public)
        elif action < 0.85:
            grantee.attest(record_id)
        elif action < 0.9:
            actor.tombstone(record_id)
        elif len(actor.entries) >= 2:
            actor.grant(record_id, grantee.public, after=actor.entries[-2])
    return [e.raw for f in (*feeds, *people) for e in f.entries]


@settings(max_examples=60)
@given(history(), st.randoms(use_true_random=False), st.integers(1, 6))
def test_state_is_independent_of_arrival_order(
    raws: list[bytes], rnd: random.Random, chunks: int
) -> None:
    reference = LedgerBook()
    reference.ingest(raws)
    shuffled = raws[:]
    rnd.shuffle(shuffled)
    shuffled += rnd.sample(raws, min(3, len(raws)))  # some arrive twice
    other = LedgerBook()
    size = max(1, len(shuffled) // chunks)
    for start in range(0, len(shuffled), size):
        other.ingest(shuffled[start : start + size])
    assert len(other) == len(reference) and other.orphan_count == 0
    assert state_of(other).digest() == state_of(reference).digest()
    assert state_of(other).rejected == state_of(reference).rejected
