"""Break-glass in the pure core: owner-only entries, sealed reasons, the policy, the review."""

from __future__ import annotations

import random

import pytest

from protocol.emergency import sealing
from protocol.emergency.messages import MAX_DURATION_MS, EmergencyAnswer, EmergencyAsk
from protocol.emergency.policy import Allow, Policy, Refusal, Refuse, decide
from protocol.emergency.review import accesses
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import EmergencyBody, EmergencySignoffBody, Entry
from protocol.ledger.live import LiveState
from protocol.ledger.state import fold
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed
from tests.protocol.test_ledger_live import assert_same
from tests.protocol.test_ledger_stealth import Person, state_of

REASON = "unconscious after a car crash, ED of hospital B"
KEY = seed("record key")
REQUESTER = Feed("hospital b").public


def sealed(record_id: bytes, text: str = REASON, key: bytes = KEY) -> bytes:
    return sealing.seal(key, sealing.REASON, record_id, REQUESTER, text, nonce=seed("n")[:24])


def note(record_id: bytes, emergency: bytes, text: str = "checked with Dr B") -> bytes:
    return sealing.seal(KEY, sealing.NOTE, record_id, emergency, text, nonce=seed("m")[:24])


class Story:
    """Hospital A's record of Alice's (her co-owner grant), B's emergency access to it."""

    def __init__(self) -> None:
        self.owner = Feed("hospital a")
        self.alice = Person("alice")
        self.record_id = self.owner.record("scan")
        self.owner.sgrant(self.record_id, self.alice.grant(self.record_id, 0), 0, patient=True)
        self.owner.grant(self.record_id, REQUESTER, expires_at=5_000_000)
        self.emergency = self.owner.write(
            EmergencyBody(self.record_id, REQUESTER, 5_000_000, sealed(self.record_id))
        )

    def signoff(self, feed: Feed | None = None) -> Entry:
        body = EmergencySignoffBody(
            self.record_id, self.emergency.hash, note(self.record_id, self.emergency.hash)
        )
        return (feed or self.owner).write(body)


def rows(*feeds: Feed) -> list[tuple[Entry, str | None]]:
    book = LedgerBook()
    book.ingest([e.raw for f in feeds for e in f.entries])
    state = fold(book.entries(), book.flagged, book.violations)
    return [(e, state.rejected.get(e.hash)) for e in book.entries()]


def test_an_owners_emergency_and_signoff_are_accepted_in_any_order_live_equals_fold() -> None:
    story = Story()
    story.signoff()
    for attempt in range(5):
        state = state_of(story.owner, rng=random.Random(attempt))
        assert not state.rejected and not state.pending
    found = accesses(rows(story.owner))
    assert [a.entry.hash for a in found] == [story.emergency.hash] and found[0].signed_off


def test_an_emergency_entry_by_another_than_the_owner_is_refused_and_flags_its_author() -> None:
    story = Story()
    forger = Feed("hospital c")
    forged = forger.write(
        EmergencyBody(story.record_id, forger.public, 9_000_000, sealed(story.record_id))
    )
    book = LedgerBook()
    book.ingest([e.raw for f in (story.owner, forger) for e in f.entries])
    # A feed-local rule (like a stranger's grant): the entry is evidence, its author flagged.
    assert forger.public in book.flagged
    state = fold(book.entries(), book.flagged, book.violations)
    reason = "emergency of a record not created earlier in its author's own feed"
    assert state.rejected[forged.hash] == reason
    assert [a.entry.hash for a in accesses(rows(story.owner, forger))] == [story.emergency.hash]
    # The state rule alone (a live state handed the entry without its feed's verdict):
    live = LiveState()
    live.apply([*story.owner.entries, forged])
    assert live.state.rejected[forged.hash] == "emergency not by the record's owner"
    reference = fold([*story.owner.entries, forged])
    assert_same(live.state, reference)


def test_a_forged_signoff_is_refused_and_does_not_clear_the_flag() -> None:
    story = Story()
    forger = Feed("hospital c")
    forged = story.signoff(forger)
    live = LiveState()
    live.apply([*story.owner.entries, forged])
    assert live.state.rejected[forged.hash] == "emergency_signoff not by the record's owner"
    found = accesses([(e, live.state.rejected.get(e.hash)) for e in [*story.owner.entries, forged]])
    assert not found[0].signed_off


def test_a_signoff_naming_another_records_emergency_does_not_count() -> None:
    story = Story()
    other = story.owner.record("other")
    story.owner.write(
        EmergencySignoffBody(other, story.emergency.hash, note(other, story.emergency.hash))
    )
    assert not accesses(rows(story.owner))[0].signed_off


def test_the_reason_opens_with_the_record_key_only_and_is_bound_to_its_entry() -> None:
    story = Story()
    body = story.emergency.body
    assert isinstance(body, EmergencyBody)
    opened = sealing.open_text(KEY, sealing.REASON, story.record_id, REQUESTER, body.reason)
    assert opened == REASON
    with pytest.raises(sealing.SealError):
        sealing.open_text(seed("other"), sealing.REASON, story.record_id, REQUESTER, body.reason)
    with pytest.raises(sealing.SealError):  # copied onto another requester's entry
        sealing.open_text(KEY, sealing.REASON, story.record_id, seed("x"), body.reason)
    with pytest.raises(sealing.SealError):  # or read as a note
        sealing.open_text(KEY, sealing.NOTE, story.record_id, REQUESTER, body.reason)


def test_the_ledger_shows_no_plaintext_reason_and_nothing_of_the_patient() -> None:
    story = Story()
    story.signoff()
    raw = b"".join(e.raw for e in story.owner.entries if e.type.startswith("emergency"))
    for fragment in (b"unconscious", b"car crash", b"checked with", REASON.encode()):
        assert fragment not in raw
    # Nothing of hers: neither her address, nor her view or spend key, nor her grant's P.
    for hers in (story.alice.key.address.view_public, story.alice.key.spend_public):
        assert hers not in raw


def test_reasons_are_printable_and_bounded() -> None:
    with pytest.raises(sealing.SealError):
        sealed(b"r" * 32, "x" * (sealing.MAX_REASON_CHARS + 1))
    with pytest.raises(sealing.SealError):
        sealed(b"r" * 32, "line\nbreak")
    with pytest.raises(ValueError, match="always expires"):
        EmergencyBody(b"r" * 32, REQUESTER, 0, sealed(b"r" * 32))


def test_policy_nobody_by_default_then_by_site_or_key_and_capped() -> None:
    b, c = seed("b")[:32], seed("c")[:32]
    assert decide(Policy(), b, "hospital-b", 1000) == Refuse(
        Refusal.DISABLED, "this node grants no emergency access"
    )
    policy = Policy(allowed_sites=frozenset({"hospital-b"}), allowed_nodes=frozenset({c}),
                    max_duration_ms=60_000)  # fmt: skip
    assert decide(policy, b, "hospital-b", 10_000) == Allow(10_000, approval=False)
    assert decide(policy, c, None, 10_000) == Allow(10_000, approval=False)
    assert decide(policy, b, "hospital-b", 10**9) == Allow(60_000, approval=False)  # capped
    refused = decide(policy, seed("d")[:32], "hospital-d", 10_000)
    assert isinstance(refused, Refuse) and refused.code is Refusal.NOT_ALLOWED
    assert isinstance(decide(policy, b, "hospital-b", 0), Refuse)
    approving = Policy(allowed_nodes=frozenset({c}), require_approval=True)
    assert decide(approving, c, None, 1000) == Allow(1000, approval=True)


def test_the_rpc_refuses_out_of_range_asks_before_any_decision() -> None:
    EmergencyAsk(b"r" * 32, REASON, 60_000)
    for bad in (
        dict(record_id=b"r" * 31, reason=REASON, duration_ms=1),
        dict(record_id=b"r" * 32, reason="", duration_ms=1),
        dict(record_id=b"r" * 32, reason="x" * (sealing.MAX_REASON_CHARS + 1), duration_ms=1),
        dict(record_id=b"r" * 32, reason=b"a\\x00b".decode("unicode_escape"), duration_ms=1),
        dict(record_id=b"r" * 32, reason=REASON, duration_ms=0),
        dict(record_id=b"r" * 32, reason=REASON, duration_ms=MAX_DURATION_MS + 1),
    ):
        with pytest.raises(ValueError):
            EmergencyAsk(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EmergencyAnswer("maybe")
    with pytest.raises(ValueError):
        EmergencyAnswer("granted", entries=(b"x" * 5000,))
