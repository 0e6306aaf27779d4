"""A record's audit trail: every grant, revoke, attestation and read in time order, with
fake reads, forged grants and refused statements flagged rather than hidden."""

from __future__ import annotations

import nacl.signing
import pytest

from protocol.ledger import access
from protocol.ledger.entries import AccessBody, GrantBody
from protocol.ledger.state import fold
from protocol.ledger.trail import (
    EMERGENCY,
    NEVER_GRANTED,
    RowKind,
    TrailRow,
    hidden_reads,
    trail,
)
from protocol.records import permit
from protocol.records.purpose import Purpose
from protocol.signer import Signer
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed
from tests.protocol.test_ledger_stealth import Person, p_of

SITE = "st-mary"


def read(
    logger: Feed,
    who: Signer | nacl.signing.SigningKey,
    record_id: bytes,
    read: int,
    *,
    purpose: Purpose = Purpose.TREAT,
    at: int | None = None,
) -> None:
    """`logger` (a reader's node) logs a read by `who` through itself."""
    statement = permit.sign(who, record_id, logger.public, logger.clock if at is None else at,
                            read_id=read.to_bytes(16, "big"), purpose=purpose)  # fmt: skip
    logger.write(AccessBody(record_id, statement))


def rows_of(record_id: bytes, *feeds: Feed) -> list[TrailRow]:
    entries = [e for f in feeds for e in f.entries]
    entries.sort(key=lambda e: e.timestamp)
    state = fold(entries)
    sites = {feeds[1].public: SITE}
    return trail(record_id, entries, state, sites.get)


def test_the_trail_lists_grants_revokes_attestations_and_reads_in_time_order() -> None:
    hospital, clinic = Feed("hospital"), Feed("clinic node")
    alice = Person("alice")
    doctor = nacl.signing.SigningKey(seed("doctor"))
    record_id = hospital.record("r1")
    to_alice = alice.grant(record_id, 0)
    hospital.sgrant(record_id, to_alice, 0, patient=True)
    hospital.grant(record_id, bytes(doctor.verify_key), expires_at=9_000_000)
    her = alice.feed(record_id, 0, to_alice)
    clinic.clock = hospital.clock
    read(clinic, doctor, record_id, 1, purpose=Purpose.HPAYMT)
    her.clock = clinic.clock
    her.attest(record_id)
    clinic.clock = her.clock + 1000
    read(clinic, alice.one_time(record_id, 0, to_alice), record_id, 2, purpose=Purpose.PATRQT)
    hospital.clock = clinic.clock
    hospital.revoke(record_id, bytes(doctor.verify_key))

    rows = rows_of(record_id, hospital, clinic, her)

    kinds = [row.kind for row in rows]
    assert kinds == ["record", "grant", "grant", "read", "attest", "read", "revoke"]
    assert [row.at_ms for row in rows] == sorted(row.at_ms for row in rows)
    _, patient, doctors, paid, attest, hers, revoke = rows
    assert patient.one_time and patient.patient and patient.who == p_of(to_alice)
    assert alice.key.spend_public not in {row.who for row in rows}  # only P names her
    assert not doctors.one_time and doctors.expires_at == 9_000_000
    assert (paid.who, paid.purpose, paid.node) == (
        bytes(doctor.verify_key),
        "HPAYMT",
        clinic.public,
    )
    assert paid.site == SITE and paid.loggers == (clinic.public,) and not paid.flags
    assert attest.one_time and attest.who == p_of(to_alice)
    assert hers.one_time and hers.purpose == "PATRQT" and not hers.flags
    assert revoke.who == bytes(doctor.verify_key) and revoke.by == hospital.public


def test_a_read_by_a_key_never_granted_stands_out() -> None:
    """Any member may log a statement its own fresh key signed: it folds as a read, and
    the trail flags it; the owner's and a revoked grantee's reads are not flagged."""
    hospital, member = Feed("hospital"), Feed("member node")
    record_id = hospital.record("r1")
    doctor = nacl.signing.SigningKey(seed("doctor"))
    hospital.grant(record_id, bytes(doctor.verify_key))
    hospital.revoke(record_id, bytes(doctor.verify_key))
    member.clock = hospital.clock
    for number in range(3):  # a handful of fake readers
        read(member, nacl.signing.SigningKey(seed(f"fake {number}")), record_id, number)
    read(member, doctor, record_id, 10)
    read(member, hospital.key, record_id, 11)

    reads = [row for row in rows_of(record_id, hospital, member) if row.kind == "read"]

    flagged = {row.who for row in reads if NEVER_GRANTED in row.flags}
    assert len(flagged) == 3
    assert bytes(doctor.verify_key) not in flagged and hospital.public not in flagged


def test_an_emergency_read_is_its_own_kind_and_flagged() -> None:
    hospital, er = Feed("hospital"), Feed("emergency room")
    record_id = hospital.record("r1")
    doctor = nacl.signing.SigningKey(seed("doctor"))
    hospital.grant(record_id, bytes(doctor.verify_key))
    er.clock = hospital.clock
    read(er, doctor, record_id, 1, purpose=Purpose.ETREAT)
    (row,) = [r for r in rows_of(record_id, hospital, er) if r.node is not None]
    assert row.kind == RowKind.EMERGENCY and row.flags == (EMERGENCY,)
    assert row.purpose == "ETREAT"


def test_forged_grants_and_refused_statements_are_shown_rejected_not_hidden() -> None:
    hospital, member = Feed("hospital"), Feed("member node")
    record_id = hospital.record("r1")
    member.clock = hospital.clock + 3 * access.MAX_BEHIND_MS
    member.write(GrantBody(record_id, member.public, b"s" * 80, 0))  # not the owner's to give
    read(member, member.key, record_id, 1, at=member.clock - 2 * access.MAX_BEHIND_MS)  # stale

    rows = rows_of(record_id, hospital, member)

    forged = next(r for r in rows if r.kind == "grant")
    assert forged.flags and forged.flags[0].startswith("REJECTED: ")
    stale = next(r for r in rows if r.kind == "read")
    assert stale.flags == ("REJECTED: access statement older than a day when logged",)


def test_reads_pushed_out_of_the_state_by_a_flood_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(access, "MAX_ACCESSES_PER_RECORD", 3)
    hospital, member = Feed("hospital"), Feed("member node")
    record_id = hospital.record("r1")
    member.clock = hospital.clock
    for number in range(5):
        read(member, member.key, record_id, number)
    entries = [*hospital.entries, *member.entries]
    state = fold(entries)
    assert len([r for r in trail(record_id, entries, state) if r.kind == "read"]) == 3
    assert hidden_reads(record_id, entries, state) == 2


def test_another_records_entries_are_left_out() -> None:
    hospital = Feed("hospital")
    first, second = hospital.record("r1"), hospital.record("r2")
    hospital.grant(second, b"g" * 32)
    entries = hospital.entries
    rows = trail(first, entries, fold(entries))
    assert [row.kind for row in rows] == ["record"]
