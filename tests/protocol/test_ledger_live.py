"""The incremental ledger state equals the full fold, whatever the order and batching."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ledger.book import IngestResult, LedgerBook
from protocol.ledger.entries import RecordBody, derive_record_id, grant_context
from protocol.ledger.live import LiveState
from protocol.ledger.state import LedgerState, fold
from protocol.privacy import PersonKey, make_grant, open_grant
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed


@st.composite
def tangled_history(draw: st.DrawFn) -> list[bytes]:
    """Several authors, valid and invalid entries, forks, and duplicate record ids."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    feeds = [Feed(f"author {i}") for i in range(3)]
    people = [Feed(f"person {i}") for i in range(2)]
    records: list[tuple[Feed, bytes, str]] = []
    stealthy: list[tuple[bytes, Feed]] = []  # (record, the feed of a stealth grant's P)
    for step in range(draw(st.integers(1, 30))):
        feed = rnd.choice(feeds)
        action = rnd.random()
        if action < 0.2 or not records:
            records.append((feed, feed.record(f"rec {step}"), f"rec {step}"))
            continue
        owner, record_id, label = rnd.choice(records)
        if rnd.random() < 0.35:
            _stealth_step(rnd, step, owner=owner, feed=feed, record_id=record_id, stealthy=stealthy)
            continue
        actor = owner if rnd.random() < 0.8 else feed
        grantee = rnd.choice(people)
        after = actor.entries[-2] if len(actor.entries) >= 2 and rnd.random() < 0.15 else None
        if action < 0.5:
            expiry = rnd.choice([0, 10**9])
            actor.grant(
                record_id, grantee.public, expires_at=expiry, **({"after": after} if after else {})
            )
        elif action < 0.65:
            actor.revoke(record_id, grantee.public, **({"after": after} if after else {}))
        elif action < 0.8:
            grantee.attest(record_id, rnd.choice([b"m" * 32, b"x" * 32]))
        elif action < 0.87:
            actor.tombstone(record_id)
        else:  # the same record id again, with another manifest, maybe on a fork
            nonce = seed(label)[:16]
            body = RecordBody(derive_record_id(owner.public, nonce), nonce, bytes([step]) * 32,
                              7, 2, 3, owner.public)  # fmt: skip
            owner.write(body, after=owner.entries[-2] if len(owner.entries) >= 2 else None)
    return [e.raw for f in (*feeds, *people, *(p for _, p in stealthy)) for e in f.entries]


def _stealth_step(
    rnd: random.Random,
    step: int,
    *,
    owner: Feed,
    feed: Feed,
    record_id: bytes,
    stealthy: list[tuple[bytes, Feed]],
) -> None:
    """One stealth action: a grant by the owner, a stranger or a P; a revoke by one."""
    mine = [p for r, p in stealthy if r == record_id]
    author = rnd.choice([owner, owner, feed, *mine])
    if mine and rnd.random() < 0.35:
        author.revoke(record_id, rnd.choice(mine).public)
        return
    if mine and rnd.random() < 0.15:
        rnd.choice(mine).attest(record_id)
        return
    person = PersonKey(seed(f"stealth person {step % 3}"))
    index = rnd.randrange(4)  # small: duplicate indices happen
    context = grant_context(record_id, index)
    grant = make_grant(person.address, b"k" * 32, seed(f"rand {step}"), context)
    author.sgrant(record_id, grant.to_bytes(), index, patient=rnd.random() < 0.6)
    one_time = open_grant(person, grant, context).one_time_key
    stealthy.append((record_id, Feed(f"P {step}", one_time)))


def apply(live: LiveState, book: LedgerBook, result: IngestResult) -> None:
    """What the node's ledger service does with an ingest result."""
    violations = {
        e.hash: book.violations[e.hash] for e in result.accepted if e.hash in book.violations
    }
    live.apply(result.accepted, removed=result.dropped, flagged=result.flags, violations=violations)


def reference_of(book: LedgerBook) -> LedgerState:
    return fold(book.entries(), book.flagged, book.violations)


def assert_same(live: LedgerState, reference: LedgerState) -> None:
    assert live.digest() == reference.digest()
    assert live.recomputed_sum() == reference.recomputed_sum() == live._sum
    assert live.records == reference.records and live.grants == reference.grants
    assert live.attestations == reference.attestations
    assert live.tombstones == reference.tombstones and live.flagged == reference.flagged
    assert live.rejected == reference.rejected and live.pending == reference.pending
    assert live.ever_granted == reference.ever_granted
    for record_id in live.records:
        assert live.grants_of(record_id) == reference.grants_of(record_id)


@settings(max_examples=150, deadline=None)
@given(tangled_history(), st.randoms(use_true_random=False), st.integers(1, 8))
def test_incremental_state_equals_the_full_fold(
    raws: list[bytes], rnd: random.Random, batches: int
) -> None:
    shuffled = raws[:]
    rnd.shuffle(shuffled)
    shuffled += rnd.sample(raws, min(3, len(raws)))  # replays
    book, live = LedgerBook(), LiveState()
    size = max(1, len(shuffled) // batches)
    for start in range(0, len(shuffled), size):
        apply(live, book, book.ingest(shuffled[start : start + size]))
        assert_same(live.state, reference_of(book))
    reference = LedgerBook()
    reference.ingest(raws)
    held = {e.hash for e in book.entries()}
    assert held == {e.hash for e in reference.entries()}  # what is kept: order-independent
    assert book.frozen == reference.frozen and book.violations == reference.violations
    assert book.heads() == reference.heads()  # heads kept per entry, whatever the order
    assert live.state.digest() == reference_of(reference).digest()


def test_a_batch_touches_only_what_it_changes() -> None:
    owners = [Feed(f"owner {i}") for i in range(40)]
    book, live = LedgerBook(), LiveState()
    for i, owner in enumerate(owners):
        for j in range(10):
            record_id = owner.record(f"r {i} {j}")
            owner.grant(record_id, owners[(i + 1) % 40].public)
        apply(live, book, book.ingest(e.raw for e in owner.entries))
    live.changes()
    before = live.touched
    newcomer = Feed("newcomer")
    record_id = newcomer.record("new")
    newcomer.grant(record_id, owners[0].public)
    apply(live, book, book.ingest(e.raw for e in newcomer.entries))
    assert live.touched - before == 2  # 800 entries held, two looked at
    changes = live.changes()
    assert changes.records == {record_id} and changes.size == 2
    assert live.state.digest() == fold(book.entries()).digest()


def test_problems_checks_new_entries_without_applying_them() -> None:
    owner, mallory, patient = Feed("owner"), Feed("mallory"), Feed("patient")
    record_id = owner.record("r1")
    live = LiveState()
    live.apply(owner.entries)
    digest = live.state.digest()
    grant = mallory.grant(record_id, mallory.public)
    attest = patient.attest(record_id)
    assert live.problems([grant, attest]) == {
        grant.hash: "grant not by the record's owner",
        attest.hash: "attester was never granted the record",
    }
    new_id = owner.record("r2")
    ok = owner.grant(new_id, patient.public)
    assert live.problems(owner.entries[-2:]) == {}  # the grant relies on the record before it
    assert ok.hash not in live.state.rejected and live.state.digest() == digest
