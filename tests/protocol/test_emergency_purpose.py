"""The purpose a node states unasked, and the audit's break-glass rows: ETREAT only when the
read right comes from the owner's emergency grant; the trail shows the emergency entry,
its sign-off, and flags every read under it whatever it states."""

from __future__ import annotations

import nacl.signing

from protocol.emergency.purpose import default_purpose
from protocol.ledger.entries import EmergencyBody, EmergencySignoffBody, Entry
from protocol.ledger.state import LedgerState, fold
from protocol.ledger.trail import EMERGENCY, NOT_SIGNED_OFF, RowKind, TrailRow, trail
from protocol.records import permit
from protocol.records.purpose import Purpose
from tests.protocol.ledger_helpers import Feed
from tests.protocol.test_emergency import KEY, REASON, REQUESTER, Story, note, sealed
from tests.protocol.test_ledger_trail import read

EXPIRES = 5_000_000  # Story's emergency grant to REQUESTER ends here
SITE = "hospital-b"


def state_of(*feeds: Feed) -> tuple[list[Entry], LedgerState]:
    entries = sorted((e for f in feeds for e in f.entries), key=lambda e: e.timestamp)
    return entries, fold(entries)


def purpose(story: Story, reader: bytes, now: int, *feeds: Feed) -> Purpose:
    entries, state = state_of(story.owner, *feeds)
    rows = [(e, state.rejected.get(e.hash)) for e in entries]
    return default_purpose(state, story.record_id, reader, rows, now)


def test_an_emergency_grant_alone_reads_for_emergency_treatment() -> None:
    story = Story()
    assert purpose(story, REQUESTER, 2_000_000) is Purpose.ETREAT


def test_an_ordinary_grant_after_it_reads_for_treatment() -> None:
    story = Story()
    story.owner.grant(story.record_id, REQUESTER)  # the owner shares it for good
    assert purpose(story, REQUESTER, 2_000_000) is Purpose.TREAT
    other = Story()  # an expiring grant of its own, not the emergency's expiry
    other.owner.grant(other.record_id, REQUESTER, expires_at=EXPIRES + 60_000)
    assert purpose(other, REQUESTER, 2_000_000) is Purpose.TREAT


def test_an_expired_emergency_reads_for_treatment_and_is_refused_as_ever() -> None:
    story = Story()
    assert purpose(story, REQUESTER, EXPIRES) is Purpose.TREAT
    _, state = state_of(story.owner)
    assert state.grant_for(story.record_id, REQUESTER, EXPIRES) is None  # the read is refused


def test_an_emergency_for_another_node_leaves_this_one_at_treatment() -> None:
    story = Story()
    other = Feed("hospital c").public
    story.owner.grant(story.record_id, other, expires_at=EXPIRES)  # same expiry, no emergency
    assert purpose(story, other, 2_000_000) is Purpose.TREAT
    assert purpose(story, story.owner.public, 2_000_000) is Purpose.TREAT  # the owner's own


def test_a_member_cannot_make_another_nodes_reads_emergencies() -> None:
    """A member writes an emergency entry naming B with B's ordinary grant's expiry: the
    state refuses it, B still reads for treatment, and the audit flags none of B's reads."""
    owner, member, b = Feed("hospital a"), Feed("member"), Feed("hospital b")
    record_id = owner.record("scan")
    owner.grant(record_id, b.public, expires_at=EXPIRES)
    member.clock = owner.clock
    member.write(EmergencyBody(record_id, b.public, EXPIRES, sealed(record_id)))
    b.clock = member.clock
    read(b, b.key, record_id, 1)
    entries, state = state_of(owner, member, b)
    rows = [(e, state.rejected.get(e.hash)) for e in entries]
    assert default_purpose(state, record_id, b.public, rows, 2_000_000) is Purpose.TREAT
    shown = trail(record_id, entries, state, record_key=KEY)
    (forged,) = [r for r in shown if r.kind == RowKind.BREAK_GLASS]
    assert forged.flags[0].startswith("REJECTED") and EMERGENCY not in forged.flags
    (plain,) = [r for r in shown if r.node == b.public and r.purpose]
    assert plain.kind == RowKind.READ and not plain.flags


def rows_of(story: Story, *feeds: Feed, key: bytes | None = KEY) -> list[TrailRow]:
    entries, state = state_of(story.owner, *feeds)
    return trail(story.record_id, entries, state, {REQUESTER: SITE}.get, key)


def test_the_break_glass_row_shows_requester_site_expiry_reason_and_that_it_is_open() -> None:
    story = Story()
    rows = rows_of(story)
    (glass,) = [r for r in rows if r.kind == RowKind.BREAK_GLASS]
    assert (glass.who, glass.node, glass.site, glass.by) == (
        REQUESTER,
        REQUESTER,
        SITE,
        story.owner.public,
    )
    assert glass.expires_at == EXPIRES and glass.reason == REASON
    assert glass.flags == (EMERGENCY, NOT_SIGNED_OFF) and glass.signed_off_by is None
    (granted,) = [r for r in rows if r.kind == RowKind.GRANT and r.who == REQUESTER]
    assert granted.flags == (EMERGENCY,)  # the grant it came with
    (sealed_here,) = [r for r in rows_of(story, key=None) if r.kind == RowKind.BREAK_GLASS]
    assert sealed_here.reason is None  # no record key: the reason stays sealed
    wrong = [r for r in rows_of(story, key=b"k" * 32) if r.kind == RowKind.BREAK_GLASS]
    assert wrong[0].reason is None


def test_a_signoff_closes_the_row_and_shows_by_whom_when_and_the_note() -> None:
    story = Story()
    signed = story.signoff()
    rows = rows_of(story)
    (glass,) = [r for r in rows if r.kind == RowKind.BREAK_GLASS]
    assert glass.flags == (EMERGENCY,)
    assert (glass.signed_off_by, glass.signed_off_at, glass.signoff) == (
        story.owner.public,
        signed.timestamp,
        signed.hash,
    )
    assert glass.note == "checked with Dr B"
    (row,) = [r for r in rows if r.kind == RowKind.SIGNOFF]
    assert row.emergency == story.emergency.hash and row.note == "checked with Dr B"
    assert row.who == REQUESTER and not row.flags


def test_a_forged_or_second_signoff_does_not_close_it() -> None:
    story = Story()
    forger = Feed("member")
    forger.clock = story.owner.clock
    story.signoff(forger)
    (glass,) = [r for r in rows_of(story, forger) if r.kind == RowKind.BREAK_GLASS]
    assert glass.flags == (EMERGENCY, NOT_SIGNED_OFF)
    (forged,) = [r for r in rows_of(story, forger) if r.kind == RowKind.SIGNOFF]
    assert forged.flags[0].startswith("REJECTED")
    first, second = story.signoff(), story.owner.write(
        EmergencySignoffBody(story.record_id, story.emergency.hash,
                             note(story.record_id, story.emergency.hash, "again"))
    )  # fmt: skip
    rows = [r for r in rows_of(story) if r.kind == RowKind.SIGNOFF]
    assert [(r.entry, bool(r.flags)) for r in rows] == [(first.hash, False), (second.hash, True)]


def test_a_read_under_an_emergency_grant_is_flagged_whatever_it_states() -> None:
    """B states treatment while its only right is the emergency grant: still an emergency
    read; once the owner grants B for good, B's later treatment reads are plain reads."""
    story = Story()
    b = Feed("hospital b")  # REQUESTER's feed: it logs its own reads
    b.clock = story.owner.clock
    read(b, b.key, story.record_id, 1, purpose=Purpose.TREAT)
    read(b, b.key, story.record_id, 2, purpose=Purpose.ETREAT)
    story.owner.clock = b.clock
    story.owner.grant(story.record_id, REQUESTER)
    b.clock = story.owner.clock
    read(b, b.key, story.record_id, 3, purpose=Purpose.TREAT)
    reads = [r for r in rows_of(story, b) if r.purpose is not None]
    assert [r.kind for r in reads] == [RowKind.EMERGENCY, RowKind.EMERGENCY, RowKind.READ]
    stated, emergency, later = reads
    assert stated.flags == (EMERGENCY, "stated treatment under an emergency grant")
    assert stated.emergency == story.emergency.hash
    assert emergency.flags == (EMERGENCY,) and not later.flags


def test_a_key_signed_by_someone_else_is_only_a_plain_signing_key() -> None:
    """A read by a person's key through B (not B's own) is not under B's emergency."""
    story = Story()
    b = Feed("hospital b")
    b.clock = story.owner.clock
    doctor = nacl.signing.SigningKey(b"d" * 32)
    read(b, doctor, story.record_id, 1)
    (row,) = [r for r in rows_of(story, b) if r.purpose is not None]
    assert row.kind == RowKind.READ and "EMERGENCY" not in row.flags


def test_a_backdated_statement_does_not_hide_a_read_under_break_glass() -> None:
    """B (the break-glass requester) signs its statement up to a permit's lifetime before
    the owner's emergency grant: holders serve it (fresh, and B holds a grant now), so the
    audit must still count it under the emergency, not as a plain read of a never-granted
    moment."""
    story = Story()
    granted_at = next(e.timestamp for e in story.owner.entries if e.type.name == "GRANT"
                      and e.body.grantee == REQUESTER)  # type: ignore[union-attr]  # fmt: skip
    b = Feed("hospital b")
    b.clock = story.owner.clock
    backdated = granted_at - permit.LIFETIME_MS + 60_000  # still fresh when served just after
    read(b, b.key, story.record_id, 1, purpose=Purpose.TREAT, at=backdated)
    (row,) = [r for r in rows_of(story, b) if r.purpose is not None]
    assert row.kind == RowKind.EMERGENCY and EMERGENCY in row.flags
    assert row.emergency == story.emergency.hash


def test_a_read_long_before_the_emergency_stays_a_plain_read() -> None:
    """A statement that had expired before the emergency grant existed was not served under
    it: no flag (the owner's earlier ordinary grant, since revoked, covered it)."""
    owner, b = Feed("hospital a"), Feed("hospital b")
    record_id = owner.record("scan")
    owner.grant(record_id, b.public)
    b.clock = owner.clock
    read(b, b.key, record_id, 1, purpose=Purpose.TREAT)
    owner.clock = b.clock + permit.LIFETIME_MS + 120_000
    owner.revoke(record_id, b.public)
    owner.grant(record_id, b.public, expires_at=EXPIRES)
    owner.write(EmergencyBody(record_id, b.public, EXPIRES, sealed(record_id)))
    entries, state = state_of(owner, b)
    (row,) = [r for r in trail(record_id, entries, state) if r.purpose is not None]
    assert row.kind == RowKind.READ and not row.flags
