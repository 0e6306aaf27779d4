"""Claim events: a patient's disclosing attestation, verified offline from its entries."""

from __future__ import annotations

import dataclasses
import json
import random

import nacl.signing
import pytest

from protocol.claims import event as claims
from protocol.claims.collect import NO_CERTIFICATE, collect, collect_records
from protocol.claims.disclosure import (
    Disclosure,
    DisclosureError,
    commitment,
    open_sealed,
    seal,
)
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import ClaimBody, Entry
from protocol.ledger.live import LiveState
from protocol.ledger.state import fold
from protocol.membership import certificate as certs
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed
from tests.protocol.test_ledger_stealth import Person, state_of

DISCLOSED = Disclosure(
    seed("salt")[:16], "2024-03-05", "http://loinc.org", "18748-4", "Diagnostic imaging study"
)


def record_key(record_id: bytes) -> bytes:
    return seed(f"record key {record_id.hex()}")  # as Person.grant seals it


def claim_body(record_id: bytes, manifest: bytes, disclosure: Disclosure = DISCLOSED) -> ClaimBody:
    sealed = seal(record_key(record_id), record_id, manifest, disclosure, seed("nonce")[:24])
    return ClaimBody(record_id, manifest, commitment(disclosure), sealed)


class Story:
    """A hospital's record, her patient grant, a clinician's grant, and her claim."""

    def __init__(self) -> None:
        self.hospital = Feed("hospital")
        self.alice, self.clinician = Person("alice"), Person("clinician")
        self.record_id = self.hospital.record("scan")
        self.manifest = b"m" * 32
        grant = self.alice.grant(self.record_id, 0)
        self.grant_entry = self.hospital.sgrant(self.record_id, grant, 0, patient=True)
        other = self.clinician.grant(self.record_id, 1)
        self.hospital.sgrant(self.record_id, other, 1)
        self.her_p = self.alice.feed(self.record_id, 0, grant)
        self.clin_p = self.clinician.feed(self.record_id, 1, other)
        self.claim_entry = self.her_p.write(claim_body(self.record_id, self.manifest))

    @property
    def feeds(self) -> tuple[Feed, ...]:
        return self.hospital, self.her_p, self.clin_p

    def rows(self) -> list[tuple[Entry, str | None]]:
        state = state_of(*self.feeds)
        return [(e, state.rejected.get(e.hash)) for f in self.feeds for e in f.entries]

    def event(self, certificate: bytes | None = None) -> claims.ClaimEvent:
        record = self.hospital.entries[0]
        return claims.ClaimEvent(record.raw, self.grant_entry.raw, self.claim_entry.raw,
                                 DISCLOSED, certificate)  # fmt: skip


def test_a_claim_is_an_attestation_in_the_state_in_any_order() -> None:
    story = Story()
    state = state_of(*story.feeds, rng=random.Random(5))
    assert story.her_p.public in state.attestations[story.record_id]
    assert story.claim_entry.hash not in state.rejected


def test_a_claim_by_a_stranger_or_of_another_manifest_is_refused_by_the_state() -> None:
    story = Story()
    stranger = Feed("stranger")
    forged = stranger.write(claim_body(story.record_id, story.manifest))
    wrong = story.her_p.write(claim_body(story.record_id, b"x" * 32))
    book = LedgerBook()
    book.ingest([e.raw for f in (*story.feeds, stranger) for e in f.entries])
    state = fold(book.entries(), book.flagged, book.violations)
    assert state.rejected[forged.hash] == "attester was never granted the record"
    assert state.rejected[wrong.hash] == "attests a different manifest"
    live = LiveState()
    live.apply(book.entries())
    # What a node checks before it writes or accepts a submitted claim:
    assert live.problems([forged]) == {forged.hash: "attester was never granted the record"}
    assert live.state.rejected[forged.hash] == "attester was never granted the record"


def test_the_disclosure_is_sealed_to_the_record_key_and_bound_to_the_commitment() -> None:
    story = Story()
    body = story.claim_entry.body
    assert isinstance(body, ClaimBody)
    assert b"18748-4" not in story.claim_entry.raw and b"2024" not in story.claim_entry.raw
    opened = open_sealed(record_key(story.record_id), story.record_id, story.manifest,
                         body.sealed, body.disclosure)  # fmt: skip
    assert opened == DISCLOSED
    with pytest.raises(DisclosureError, match="does not open"):
        open_sealed(b"k" * 32, story.record_id, story.manifest, body.sealed, body.disclosure)
    with pytest.raises(DisclosureError, match="differs"):
        open_sealed(record_key(story.record_id), story.record_id, story.manifest,
                    body.sealed, b"c" * 32)  # fmt: skip
    with pytest.raises(DisclosureError, match="YYYY-MM-DD"):
        Disclosure(b"s" * 16, "5 March")
    with pytest.raises(ValueError, match="disclosure commitment must be 32"):
        ClaimBody(story.record_id, story.manifest, body.disclosure[:31], body.sealed)
    with pytest.raises(ValueError, match="sealed disclosure must be"):
        ClaimBody(story.record_id, story.manifest, body.disclosure, b"s" * 2000)


def test_an_honest_event_verifies_and_says_what_it_proves() -> None:
    story = Story()
    verified = claims.decode(claims.encode(story.event()))
    assert verified.provider == story.hospital.public
    assert verified.patient_key == story.her_p.public
    assert verified.record_id == story.record_id and verified.manifest_hash == story.manifest
    assert verified.site is None
    assert verified.event.disclosure == DISCLOSED
    shown = json.loads(claims.encode(story.event()))
    assert shown["disclosed"]["type"]["code"] == "18748-4"


def test_every_altered_byte_of_an_event_fails() -> None:
    authority = nacl.signing.SigningKey(seed("authority"))
    story = Story()
    cert = certs.issue(authority, story.hospital.public, "St Mary", issued_at=0).encode()
    text = claims.encode(story.event(cert))
    assert claims.decode(text, authority=bytes(authority.verify_key)).site == "St Mary"
    rng = random.Random(16)
    for position in range(len(text)):
        for delta in (1, rng.randrange(2, 256)):
            altered = bytearray(text)
            altered[position] = (altered[position] + delta) % 256
            with pytest.raises(claims.InvalidEvent):
                claims.decode(bytes(altered))


def test_the_certificate_must_be_the_owners_and_by_the_named_authority() -> None:
    story = Story()
    authority = nacl.signing.SigningKey(seed("authority"))
    other = nacl.signing.SigningKey(seed("another authority"))
    theirs = certs.issue(authority, b"n" * 32, "Elsewhere", issued_at=0).encode()
    with pytest.raises(claims.InvalidEvent, match="another key"):
        claims.verify(story.event(theirs))
    with pytest.raises(claims.InvalidEvent, match="carries no certificate"):
        claims.verify(story.event(), authority=bytes(authority.verify_key))
    mine = certs.issue(other, story.hospital.public, "Fake", issued_at=0).encode()
    with pytest.raises(claims.InvalidEvent, match="not signed by that authority"):
        claims.verify(story.event(mine), authority=bytes(authority.verify_key))


def test_a_claim_by_a_grantee_who_is_not_the_patient_makes_no_event() -> None:
    story = Story()
    clinician_claim = story.clin_p.write(claim_body(story.record_id, story.manifest))
    found = collect(story.rows(), record_key(story.record_id))
    assert [v.claim_entry for v in found.events] == [story.claim_entry.hash]
    assert "no patient grant" in found.skipped[clinician_claim.hash]
    # Assembled by hand with the clinician's grant, it does not verify either.
    clinician_grant = story.hospital.entries[2]
    forged = claims.ClaimEvent(story.hospital.entries[0].raw, clinician_grant.raw,
                               clinician_claim.raw, DISCLOSED)  # fmt: skip
    with pytest.raises(claims.InvalidEvent, match="no patient"):
        claims.verify(forged)
    lying = claims.ClaimEvent(story.hospital.entries[0].raw, story.grant_entry.raw,
                              clinician_claim.raw, DISCLOSED)  # fmt: skip
    with pytest.raises(claims.InvalidEvent, match="one-time key"):
        claims.verify(lying)


def test_other_disclosed_fields_than_signed_fail() -> None:
    story = Story()
    event = story.event()
    other = dataclasses.replace(DISCLOSED, service_date="2024-03-06")
    changed = claims.ClaimEvent(event.record, event.grant, event.claim, other)
    with pytest.raises(claims.InvalidEvent, match="not the ones the claim signed"):
        claims.verify(changed)


def test_a_wrong_record_key_or_a_record_without_claims_gives_nothing() -> None:
    story = Story()
    found = collect(story.rows(), b"k" * 32)
    assert not found.events and "does not open" in found.skipped[story.claim_entry.hash]
    assert not collect([], record_key(story.record_id)).events


def test_collect_records_carries_the_owners_certificate_when_it_verifies() -> None:
    story = Story()
    authority = nacl.signing.SigningKey(seed("authority"))
    owner = story.hospital.public
    good = certs.issue(authority, owner, "General", issued_at=0).encode()
    keys = {story.record_id: record_key(story.record_id)}
    asked: list[bytes] = []

    def known(key: bytes) -> bytes | None:
        asked.append(key)
        return good

    found = collect_records(story.rows(), keys, known)
    (event,) = found.events
    assert asked == [owner] and event.site == "General" and not found.uncertified
    text = claims.encode(event.event)
    assert claims.decode(text, authority=bytes(authority.verify_key)).hash == event.hash
    # Records the caller holds no key of are ignored, whatever entries arrive.
    assert not collect_records(story.rows(), {b"r" * 32: b"k" * 32}, known).events


def test_an_unknown_or_unusable_certificate_leaves_the_event_without_one_and_says_why() -> None:
    story = Story()
    authority = nacl.signing.SigningKey(seed("authority"))
    keys = {story.record_id: record_key(story.record_id)}
    claim = story.claim_entry.hash
    found = collect_records(story.rows(), keys, lambda key: None)
    (event,) = found.events
    assert event.event.certificate is None and found.uncertified[claim] == NO_CERTIFICATE
    with pytest.raises(claims.InvalidEvent, match="carries no certificate"):
        claims.decode(claims.encode(event.event), authority=bytes(authority.verify_key))
    # A certificate of another key, or one that expired before the record, costs the
    # event nothing: it is left out, and the reason kept.
    theirs = certs.issue(authority, b"n" * 32, "Elsewhere", issued_at=0).encode()
    expired = certs.issue(authority, story.hospital.public, "Old", issued_at=0, expires_at=1)
    for bad, why in ((theirs, "another key"), (expired.encode(), "expired")):
        found = collect_records(story.rows(), keys, lambda key, bad=bad: bad)  # type: ignore[misc]
        (event,) = found.events
        assert event.event.certificate is None and why in found.uncertified[claim]
