"""Stealth grants in the ledger: honest use, co-owners (patients), and what others cannot do."""

from __future__ import annotations

import random

import nacl.signing
import pytest

from protocol.ledger import stealth
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import (
    STEALTH_GRANT_SIZE,
    InvalidEntry,
    StealthGrantBody,
    decode_entry,
    grant_context,
)
from protocol.ledger.feeds import RATE_LIMITS
from protocol.ledger.live import LiveState
from protocol.ledger.state import LedgerState, fold
from protocol.privacy import OneTimeKey, PersonKey, make_grant, open_grant, scan
from protocol.privacy.grant import ENCODED_SIZE, StealthGrant
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed
from tests.protocol.test_ledger_live import assert_same


class Person:
    """A person with a dual key; grants to her are made here with seeded randomness."""

    def __init__(self, label: str) -> None:
        self.key = PersonKey(seed(f"person {label}"))
        self.label = label

    def grant(self, record_id: bytes, index: int) -> bytes:
        random = seed(f"grant {self.label} {record_id.hex()} {index}")
        record_key = seed(f"record key {record_id.hex()}")
        return make_grant(
            self.key.address, record_key, random, grant_context(record_id, index)
        ).to_bytes()

    def one_time(self, record_id: bytes, index: int, grant: bytes) -> OneTimeKey:
        opened = open_grant(
            self.key, StealthGrant.from_bytes(grant), grant_context(record_id, index)
        )
        return opened.one_time_key

    def feed(self, record_id: bytes, index: int, grant: bytes) -> Feed:
        """The feed her grant's one-time key P writes."""
        return Feed(f"{self.label} P", self.one_time(record_id, index, grant))


def state_of(*feeds: Feed, rng: random.Random | None = None) -> LedgerState:
    raws = [e.raw for f in feeds for e in f.entries]
    if rng is not None:
        rng.shuffle(raws)
    book = LedgerBook()
    result = book.ingest(raws)
    assert not result.rejected and not book.frozen
    reference = fold(book.entries(), book.flagged, book.violations)
    live = LiveState()
    live.apply(book.entries())
    assert_same(live.state, reference)
    return reference


def p_of(grant: bytes) -> bytes:
    return StealthGrant.from_bytes(grant).one_time


def test_the_body_carries_a_whole_grant_and_its_rules() -> None:
    assert STEALTH_GRANT_SIZE == ENCODED_SIZE
    record_id = b"r" * 32
    grant = Person("alice").grant(record_id, 0)
    with pytest.raises(ValueError, match="never expires"):
        StealthGrantBody(record_id, grant, 0, 5, True)
    with pytest.raises(ValueError, match="index"):
        StealthGrantBody(record_id, grant, 70_000, 0, False)
    with pytest.raises(ValueError, match="114 bytes"):
        StealthGrantBody(record_id, grant[:-1], 0, 0, False)
    body = StealthGrantBody(record_id, grant, 3, 0, True)
    assert body.one_time == p_of(grant) and body.context == record_id + b"\x00\x03"


def test_a_stealth_grant_reads_like_any_grant_and_names_nobody() -> None:
    hospital, alice, bob = Feed("hospital"), Person("alice"), Person("bob")
    record_id = hospital.record("r1")
    to_alice = alice.grant(record_id, 0)
    to_bob = bob.grant(record_id, 1)
    hospital.sgrant(record_id, to_alice, 0, patient=True)
    hospital.sgrant(record_id, to_bob, 1, expires_at=5_000)
    state = state_of(hospital)
    p_alice, p_bob = p_of(to_alice), p_of(to_bob)
    grant = state.grant_for(record_id, p_alice, now_ms=10**12)
    assert grant is not None and grant.stealth and grant.patient and grant.index == 0
    assert grant.sealed_key == to_alice
    assert state.grant_for(record_id, p_bob, now_ms=4_999) is not None
    assert state.grant_for(record_id, p_bob, now_ms=5_000) is None  # expired
    assert state.grant_ended(record_id, p_bob, now_ms=5_000)
    assert {g.grantee for g in state.grants_of(record_id)} == {p_alice, p_bob}
    assert alice.key.spend_public not in {g.grantee for g in state.grants_of(record_id)}
    # Her wallet finds exactly her grant with her view key and the entry's context.
    pairs = [(StealthGrant.from_bytes(g.sealed_key), grant_context(record_id, g.index or 0))
             for g in state.grants_of(record_id)]  # fmt: skip
    found = [pairs[i][0].one_time for i, _ in scan(alice.key.view, pairs)]
    assert found == [p_alice]


def test_a_grantee_attests_with_her_one_time_key() -> None:
    hospital, alice = Feed("hospital"), Person("alice")
    record_id = hospital.record("r1")
    grant = alice.grant(record_id, 0)
    hospital.sgrant(record_id, grant, 0)
    her = alice.feed(record_id, 0, grant)
    attest = her.attest(record_id)
    state = state_of(hospital, her)
    assert state.attestations[record_id] == (p_of(grant),)
    assert attest.hash not in state.rejected


def test_the_owner_revokes_a_stealth_grant_by_its_key() -> None:
    hospital, alice = Feed("hospital"), Person("alice")
    record_id = hospital.record("r1")
    grant = alice.grant(record_id, 0)
    hospital.sgrant(record_id, grant, 0)
    hospital.revoke(record_id, p_of(grant))
    state = state_of(hospital)
    assert state.grant_for(record_id, p_of(grant), now_ms=0) is None
    assert state.grant_ended(record_id, p_of(grant), now_ms=0)


def co_owned() -> tuple[Feed, bytes, Person, bytes, Feed]:
    """A record whose patient Alice co-owns sharing: (hospital, record, alice, grant, her feed)."""
    hospital, alice = Feed("hospital"), Person("alice")
    record_id = hospital.record("r1")
    grant = alice.grant(record_id, 0)
    hospital.sgrant(record_id, grant, 0, patient=True)
    return hospital, record_id, alice, grant, alice.feed(record_id, 0, grant)


def test_a_patient_shares_and_takes_back() -> None:
    hospital, record_id, _, _, her = co_owned()
    doctor, insurer, nurse = Person("doctor"), Person("insurer"), Person("nurse")
    to_nurse = nurse.grant(record_id, 1)
    hospital.sgrant(record_id, to_nurse, 1)  # the hospital's, not a co-owner grant
    to_doctor = doctor.grant(record_id, 2)
    to_insurer = insurer.grant(record_id, 3)
    her.sgrant(record_id, to_doctor, 2)
    her.sgrant(record_id, to_insurer, 3, expires_at=10**13)
    her.revoke(record_id, p_of(to_insurer))
    her.revoke(record_id, p_of(to_nurse))  # any stealth grant that is no co-owner's
    for rng_seed in range(4):
        state = state_of(hospital, her, rng=random.Random(rng_seed))
        assert state.grant_for(record_id, p_of(to_doctor), now_ms=0) is not None
        assert state.grant_for(record_id, p_of(to_insurer), now_ms=0) is None
        assert state.grant_for(record_id, p_of(to_nurse), now_ms=0) is None
        assert state.grant_ended(record_id, p_of(to_insurer), now_ms=0)
        assert not state.rejected
    # Her shared doctor attests; the insurer's attestation still counts (ever granted).
    doc = doctor.feed(record_id, 2, to_doctor)
    doc.attest(record_id)
    state = state_of(hospital, her, doc)
    assert p_of(to_doctor) in state.attestations[record_id]


def test_a_co_owner_chain_and_whose_grants_a_co_owner_may_revoke() -> None:
    hospital, record_id, _alice, grant, her = co_owned()
    guardian = Person("guardian")
    to_guardian = guardian.grant(record_id, 1)
    her.sgrant(record_id, to_guardian, 1, patient=True)
    guard = guardian.feed(record_id, 1, to_guardian)
    friend = Person("friend")
    to_friend = friend.grant(record_id, 2)
    guard.sgrant(record_id, to_friend, 2)
    cannot = guard.revoke(record_id, p_of(grant))  # her maker's grant: no
    state = state_of(hospital, her, guard)
    assert state.grant_for(record_id, p_of(to_friend), now_ms=0) is not None
    assert state.rejected == {cannot.hash: stealth.NOT_HER_CO_OWNER}
    assert state.grant_for(record_id, p_of(grant), now_ms=0) is not None
    # Alice revokes the guardian she made: the guardian's share ends with her.
    her.revoke(record_id, p_of(to_guardian))
    state = state_of(hospital, her, guard)
    assert state.grant_for(record_id, p_of(to_guardian), now_ms=0) is None
    assert state.grant_for(record_id, p_of(to_friend), now_ms=0) is None
    assert state.rejected[guard.entries[0].hash] == stealth.NOT_CO_OWNER
    assert state.rejected[cannot.hash] == stealth.REVOKER_NOT_CO_OWNER
    assert (record_id, p_of(to_friend)) not in state.ever_granted


def test_a_co_owner_cannot_revoke_old_format_grants_or_the_owner() -> None:
    hospital, record_id, _, _, her = co_owned()
    clinician = Feed("clinician")
    hospital.grant(record_id, hospital.public)  # the owner's own grant, as a put writes it
    hospital.grant(record_id, clinician.public)
    old = her.revoke(record_id, clinician.public)
    owner = her.revoke(record_id, hospital.public)
    state = state_of(hospital, her)
    assert state.grant_for(record_id, clinician.public, now_ms=0) is not None
    assert state.grant_for(record_id, hospital.public, now_ms=0) is not None
    assert state.rejected == {old.hash: stealth.NOT_STEALTH, owner.hash: stealth.NOT_STEALTH}


def test_a_grantee_who_is_no_patient_cannot_share_or_revoke() -> None:
    hospital, record_id, _, patient_grant, _ = co_owned()
    bob = Person("bob")
    to_bob = bob.grant(record_id, 1)
    hospital.sgrant(record_id, to_bob, 1)  # a reader, not a co-owner
    his = bob.feed(record_id, 1, to_bob)
    share = his.sgrant(record_id, Person("eve").grant(record_id, 2), 2)
    revoke = his.revoke(record_id, p_of(patient_grant))
    state = state_of(hospital, his)
    assert state.rejected == {share.hash: stealth.NOT_CO_OWNER,
                              revoke.hash: stealth.REVOKER_NOT_CO_OWNER}  # fmt: skip
    assert state.grant_for(record_id, p_of(patient_grant), now_ms=0) is not None


def test_a_revoked_patient_can_do_nothing_and_her_acts_lapse() -> None:
    hospital, record_id, _, grant, her = co_owned()
    doctor, nurse = Person("doctor"), Person("nurse")
    to_nurse = nurse.grant(record_id, 1)
    hospital.sgrant(record_id, to_nurse, 1)
    shared = her.sgrant(record_id, doctor.grant(record_id, 2), 2)
    revoked = her.revoke(record_id, p_of(to_nurse))
    hospital.revoke(record_id, p_of(grant))  # the hospital ends her co-ownership
    later = her.sgrant(record_id, Person("eve").grant(record_id, 3), 3)
    state = state_of(hospital, her)
    assert state.grant_for(record_id, p_of(grant), now_ms=0) is None
    assert {g.index for g in state.grants_of(record_id)} == {1}  # the nurse's grant is back
    assert state.rejected == {
        shared.hash: stealth.NOT_CO_OWNER,
        later.hash: stealth.NOT_CO_OWNER,
        revoked.hash: stealth.REVOKER_NOT_CO_OWNER,
    }


def test_a_stranger_cannot_grant_squat_an_index_or_borrow_another_record() -> None:
    hospital, record_id, _alice, _grant, her = co_owned()
    other = hospital.record("r2")
    mallory = Feed("mallory")
    squat = mallory.sgrant(record_id, Person("m").grant(record_id, 1), 1)
    hospital.sgrant(record_id, Person("bob").grant(record_id, 1), 1)
    borrowed = her.sgrant(other, Person("eve").grant(other, 0), 0)  # her P is of r1 only
    state = state_of(mallory, hospital, her)
    assert state.rejected == {squat.hash: stealth.NOT_CO_OWNER, borrowed.hash: stealth.NOT_CO_OWNER}
    assert {g.index for g in state.grants_of(record_id)} == {0, 1}
    assert not [g for g in state.grants_of(other) if g.stealth]


def test_duplicates_are_refused_with_their_reason() -> None:
    hospital, record_id, _alice, grant, her = co_owned()
    same_index = hospital.sgrant(record_id, Person("bob").grant(record_id, 0), 0)
    same_key = her.sgrant(record_id, grant, 5)  # her own grant again, another index
    old_key = OneTimeKey(seed("scalar")[:31] + b"\x00")
    hospital.grant(record_id, old_key.public)
    collides = hospital.sgrant(record_id, _with_one_time(grant, old_key.public), 6)
    state = state_of(hospital, her)
    assert state.rejected == {
        same_index.hash: stealth.DUPLICATE_INDEX.format(index=0),
        same_key.hash: stealth.DUPLICATE_KEY,
        collides.hash: stealth.OLD_GRANTEE,
    }


def _with_one_time(grant: bytes, one_time: bytes) -> bytes:
    return grant[:34] + one_time + grant[66:]


def test_a_forged_entry_of_her_key_does_not_verify() -> None:
    hospital, record_id, _, _grant, her = co_owned()
    entry = her.revoke(record_id, hospital.public)
    forged = bytearray(entry.raw)
    forged[-1] ^= 1
    with pytest.raises(InvalidEntry, match="bad signature"):
        decode_entry(bytes(forged))
    # Mallory signs with her own key an entry that claims P as its author: refused too.
    mallory = nacl.signing.SigningKey(seed("mallory"))
    signature = mallory.sign(b"anything").signature
    with pytest.raises(InvalidEntry):
        decode_entry(entry.raw[:-64] + signature)


def test_stealth_grants_count_in_the_feed_rate_limits() -> None:
    hospital = Feed("hospital")
    record_id = hospital.record("r1")
    grant = Person("alice").grant(record_id, 0)
    _window, most = RATE_LIMITS[0]
    hospital.clock = 2_000_000
    raws = [hospital.entries[0].raw]
    for index in range(most + 1):
        raws.append(hospital.sgrant(record_id, _with_index_p(grant, index), index).raw)
        hospital.clock -= 999  # 1 ms per entry: the whole flood inside one window
    book = LedgerBook()
    result = book.ingest(raws)
    assert any("rate limit" in reason for _, reason in result.refused)
    assert len(book) == most + 1  # the record and `most` grants: the next is over


def _with_index_p(grant: bytes, index: int) -> bytes:
    """A distinct (random-looking) grant per index: P changes, shapes stay valid."""
    p = OneTimeKey(seed(f"p {index}")[:31] + b"\x00").public
    return _with_one_time(grant, p)


def test_problems_foresees_the_stealth_rules() -> None:
    hospital, record_id, _alice, grant, her = co_owned()
    live = LiveState()
    live.apply(hospital.entries)
    bob = Person("bob")
    ok = her.sgrant(record_id, bob.grant(record_id, 1), 1)
    dup = her.sgrant(record_id, Person("eve").grant(record_id, 1), 1)
    stranger = Feed("stranger")
    no = stranger.revoke(record_id, p_of(grant))
    digest = live.state.digest()
    assert live.problems([ok, dup]) == {dup.hash: stealth.DUPLICATE_INDEX.format(index=1)}
    assert live.problems([no]) == {no.hash: stealth.REVOKER_NOT_CO_OWNER}
    assert live.state.digest() == digest and not live.state.rejected


def test_next_index_is_the_smallest_free() -> None:
    assert stealth.next_index(set()) == 0
    assert stealth.next_index({0, 1, 3}) == 2
