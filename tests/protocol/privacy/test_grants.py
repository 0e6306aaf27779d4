"""Stealth grants: only the grantee finds and opens them; altered or foreign ones fail cleanly."""

from __future__ import annotations

import itertools
from dataclasses import replace

import nacl.bindings as sodium
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.privacy import (
    InvalidKey,
    MalformedGrant,
    NotForThisKey,
    OneTimeKey,
    PersonKey,
    SealBroken,
    StealthGrant,
    ViewKey,
    make_grant,
    open_grant,
    recognise,
    scan,
    scanning,
)
from protocol.privacy.curve import (
    FIELD_P,
    VIEW_TAG_TAG,
    edwards_to_montgomery,
    montgomery_to_edwards,
    tagged,
)
from protocol.privacy.grant import ENCODED_SIZE, sealing_key
from tests.protocol.privacy.people import ALICE, BOB, grant_to, noise

RECORD = b"record id " * 3


def test_the_grantee_finds_opens_and_signs_with_her_grant() -> None:
    grant = grant_to(ALICE, "scan", RECORD)
    assert len(grant.to_bytes()) == ENCODED_SIZE == 114
    assert StealthGrant.from_bytes(grant.to_bytes()) == grant
    assert recognise(ALICE.view, grant, RECORD) is not None
    opened = open_grant(ALICE, grant, RECORD)
    assert opened.record_key == noise("scan key")
    assert opened.one_time_key.public == grant.one_time
    signature = opened.one_time_key.sign(b"read request")
    nacl.signing.VerifyKey(grant.one_time).verify(b"read request", signature)


def test_a_grant_to_someone_else_is_not_found_nor_opened() -> None:
    grant = grant_to(BOB, "bob's scan", RECORD)
    assert recognise(ALICE.view, grant, RECORD) is None
    with pytest.raises(NotForThisKey):
        open_grant(ALICE, grant, RECORD)
    assert open_grant(BOB, grant, RECORD).record_key == noise("bob's scan key")


def test_a_foreign_grant_whose_view_tag_collides_is_still_rejected() -> None:
    """1 in 256 foreign grants pass the tag: the one-time key check must catch them."""
    for n in itertools.count():
        grant = grant_to(BOB, f"collision {n}", RECORD)
        shared = sodium.crypto_scalarmult(ALICE.view.secret, grant.ephemeral)
        if tagged(VIEW_TAG_TAG, shared, grant.ephemeral, RECORD, size=1)[0] == grant.view_tag:
            break
    assert recognise(ALICE.view, grant, RECORD) is None
    assert list(scan(ALICE.view, [(grant, RECORD)])) == []


def test_a_grant_copied_under_another_context_matches_nobody() -> None:
    grant = grant_to(ALICE, "moved", RECORD)
    assert recognise(ALICE.view, grant, b"another record") is None
    with pytest.raises(NotForThisKey):
        open_grant(ALICE, grant, b"another record")


def flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]


def field_changes(grant: StealthGrant) -> list[tuple[str, StealthGrant]]:
    return [
        ("ephemeral", replace(grant, ephemeral=flip(grant.ephemeral, 0))),
        ("view tag", replace(grant, view_tag=grant.view_tag ^ 1)),
        ("one-time", replace(grant, one_time=flip(grant.one_time, 5))),
        ("sealed", replace(grant, sealed_key=flip(grant.sealed_key, 0))),
        ("mac", replace(grant, sealed_key=flip(grant.sealed_key, 47))),
    ]


def test_every_altered_field_fails_cleanly() -> None:
    grant = grant_to(ALICE, "tamper", RECORD)
    for field, altered in field_changes(grant):
        if field in {"sealed", "mac"}:
            # Her view key still finds it (the seal is not part of P), her full key refuses it.
            assert recognise(ALICE.view, altered, RECORD) is not None, field
            with pytest.raises(SealBroken, match="tampered"):
                open_grant(ALICE, altered, RECORD)
        else:
            assert recognise(ALICE.view, altered, RECORD) is None, field
            with pytest.raises(NotForThisKey):
                open_grant(ALICE, altered, RECORD)


@settings(max_examples=60)
@given(at=st.integers(0, ENCODED_SIZE - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_of_an_encoded_grant_never_opens(at: int, bit: int) -> None:
    raw = bytearray(GRANT_BYTES)
    raw[at] ^= 1 << bit
    try:
        open_grant(ALICE, StealthGrant.from_bytes(bytes(raw)), RECORD)
    except (MalformedGrant, NotForThisKey, SealBroken):
        return
    pytest.fail(f"a grant with bit {bit} of byte {at} flipped still opened")


GRANT_BYTES = grant_to(ALICE, "bits", RECORD).to_bytes()


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (GRANT_BYTES[:-1], "114 bytes"),
        (b"\x02" + GRANT_BYTES[1:], "version 2"),
        (b"\x01" + FIELD_P.to_bytes(32, "little") + GRANT_BYTES[33:], "canonical"),
        (b"\x01" + bytes(31) + b"\x80" + GRANT_BYTES[33:], "canonical"),
    ],
)
def test_malformed_grant_bytes_are_refused_by_name(raw: bytes, complaint: str) -> None:
    with pytest.raises(MalformedGrant, match=complaint):
        StealthGrant.from_bytes(raw)


def test_a_grant_with_a_bad_view_tag_or_field_size_cannot_be_made() -> None:
    grant = grant_to(ALICE, "shape", RECORD)
    with pytest.raises(MalformedGrant, match="one byte"):
        StealthGrant(grant.ephemeral, 256, grant.one_time, grant.sealed_key)
    with pytest.raises(MalformedGrant, match="sealed key"):
        StealthGrant(grant.ephemeral, 0, grant.one_time, grant.sealed_key + b"x")


@pytest.mark.parametrize("u", [0, 1, FIELD_P - 1])
def test_a_small_order_ephemeral_is_nobodys_grant_and_scanning_goes_on(u: int) -> None:
    honest = grant_to(ALICE, "after the bad one", RECORD)
    bad = StealthGrant(u.to_bytes(32, "little"), 0, honest.one_time, honest.sealed_key)
    assert recognise(ALICE.view, bad, RECORD) is None
    found = list(scan(ALICE.view, [(bad, RECORD), (honest, RECORD)]))
    assert [position for position, _ in found] == [1]


def test_a_grant_to_a_small_order_view_key_is_refused() -> None:
    bad = ViewKey(ALICE.view.secret, ALICE.spend_public).address
    object.__setattr__(bad, "view_public", bytes(32))  # bypass the Address checks
    with pytest.raises(InvalidKey, match="small order"):
        make_grant(bad, noise("key"), noise("random"))


@pytest.mark.parametrize(
    ("record_key", "random", "complaint"),
    [(b"short", noise("r"), "record key"), (noise("k"), b"short", "randomness")],
)
def test_make_grant_refuses_wrong_lengths(record_key: bytes, random: bytes, complaint: str) -> None:
    with pytest.raises(InvalidKey, match=complaint):
        make_grant(ALICE.address, record_key, random)


def test_the_view_key_finds_but_cannot_open_or_sign() -> None:
    """Everything a view-only holder can compute does not open the seal or sign for P."""
    grant = grant_to(ALICE, "view only", RECORD)
    found = recognise(ALICE.view, grant, RECORD)
    assert found is not None  # she (or her health card) finds it
    h = found.blinding
    h_times_e = sodium.crypto_scalarmult_ed25519_noclamp(h, montgomery_to_edwards(grant.ephemeral))
    guesses = [found.shared, edwards_to_montgomery(h_times_e), grant.one_time]
    for guess in guesses:
        key = sealing_key(found.shared, guess, grant.ephemeral, grant.one_time, RECORD)
        with pytest.raises(Exception, match="Decryption failed"):
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                grant.sealed_key, grant.associated_data(RECORD), bytes(24), key
            )
    # Signing with what she knows (h) does not give a signature for P = S + hB.
    forged = OneTimeKey(h).sign(b"read request")
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(grant.one_time).verify(b"read request", forged)


def test_same_randomness_still_gives_distinct_grants() -> None:
    """The ephemeral is hedged: reused random bytes differ by context, key or person."""
    base = make_grant(ALICE.address, noise("k1"), noise("same"), b"out 0")
    others = [
        make_grant(ALICE.address, noise("k1"), noise("same"), b"out 1"),
        make_grant(ALICE.address, noise("k2"), noise("same"), b"out 0"),
        make_grant(BOB.address, noise("k1"), noise("same"), b"out 0"),
    ]
    for other in others:
        assert other.ephemeral != base.ephemeral and other.one_time != base.one_time
    assert make_grant(ALICE.address, noise("k1"), noise("same"), b"out 0") == base  # pure


def windows(raw: bytes, size: int = 8) -> set[bytes]:
    return {raw[i : i + size] for i in range(len(raw) - size + 1)}


def test_grants_to_one_person_share_no_bytes_that_unrelated_grants_do_not() -> None:
    """No 8-byte string links two grants to Alice, and none of her keys appear."""
    hers = [grant_to(ALICE, f"hers {n}", RECORD).to_bytes() for n in range(24)]
    unrelated = [grant_to(PersonKey(noise(f"stranger {n}")), f"x {n}", RECORD).to_bytes()
                 for n in range(24)]  # fmt: skip
    baseline = set().union(*(windows(a) & windows(b)
                             for a, b in itertools.combinations(unrelated, 2)))  # fmt: skip
    linking = set().union(*(windows(a) & windows(b) for a, b in itertools.combinations(hers, 2)))
    assert linking <= baseline
    keys = windows(ALICE.address.to_bytes()) | windows(ALICE.view.to_bytes())
    assert not any(keys & windows(raw) for raw in hers)


def test_the_view_tag_spares_all_but_about_one_in_256_grants_the_confirmation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of grants costs a wallet one X25519 each; confirmation only on tag hits."""
    confirmations = 0
    confirm = scanning._confirm

    def counting(*args: object) -> object:
        nonlocal confirmations
        confirmations += 1
        return confirm(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scanning, "_confirm", counting)
    flood = []
    for n in range(2048):
        fields = noise(f"flood {n}", 32 + 1 + 32 + 48)
        ephemeral = sodium.crypto_scalarmult_base(fields[:32])
        flood.append((StealthGrant(ephemeral, fields[32], fields[33:65], fields[65:]), RECORD))
    assert list(scan(ALICE.view, flood)) == []
    assert 0 < confirmations <= 2048 // 256 * 3  # expectation 8


@settings(max_examples=25)
@given(
    seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=2, unique=True),
    owners=st.lists(st.booleans(), min_size=1, max_size=6),
    randomness=st.binary(min_size=32, max_size=32),
    context=st.binary(max_size=40),
)
def test_scanning_finds_exactly_her_grants_for_random_keys(
    seeds: list[bytes], owners: list[bool], randomness: bytes, context: bytes
) -> None:
    her, other = PersonKey(seeds[0]), PersonKey(seeds[1])
    grants = []
    for n, mine in enumerate(owners):
        record_key = noise(f"{n}", 32)
        who = her if mine else other
        grants.append((make_grant(who.address, record_key, randomness, context + bytes([n])),
                       context + bytes([n])))  # fmt: skip
    found = list(scan(her.view, grants))
    assert [position for position, _ in found] == [n for n, mine in enumerate(owners) if mine]
    for position, hit in found:
        grant, ctx = grants[position]
        opened = open_grant(her, grant, ctx, hit)
        assert opened.record_key == noise(f"{position}", 32)
        message = b"attest " + ctx
        nacl.signing.VerifyKey(grant.one_time).verify(message, opened.one_time_key.sign(message))
