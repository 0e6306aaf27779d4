"""One seed gives a view part and a spend part; both serialise; bad keys are refused."""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.signing
import pytest

from protocol.privacy import Address, InvalidKey, PersonKey, ViewKey
from protocol.privacy.curve import FIELD_P
from tests.protocol.keys import seed
from tests.protocol.privacy.people import ALICE, BOB

NEUTRAL = bytes([1]) + bytes(31)  # the identity point: small order
OFF_CURVE = bytes([2]) + bytes(31)  # y = 2 has no x on Ed25519


def test_the_spend_part_is_the_persons_ordinary_ed25519_key() -> None:
    signing = nacl.signing.SigningKey(seed("person alice"))
    assert ALICE.spend_public == bytes(signing.verify_key)
    assert PersonKey.from_signing_key(signing) == ALICE
    # Her spend scalar is the key file's RFC 8032 scalar: s * B is her public key.
    reduced = sodium.crypto_core_ed25519_scalar_reduce(ALICE.spend_scalar + bytes(32))
    assert sodium.crypto_scalarmult_ed25519_base_noclamp(reduced) == ALICE.spend_public


def test_the_view_part_is_domain_separated_from_everything_the_seed_gives() -> None:
    signing = nacl.signing.SigningKey(seed("person alice"))
    view = ALICE.view.secret
    assert view not in {ALICE.seed, ALICE.spend_scalar, bytes(signing.to_curve25519_private_key())}
    assert ALICE.address.view_public != bytes(signing.verify_key.to_curve25519_public_key())
    assert PersonKey(seed("person alice")).view == ALICE.view  # deterministic
    assert ALICE.view.secret != BOB.view.secret and ALICE.address != BOB.address


def test_keys_round_trip_as_versioned_bytes() -> None:
    assert Address.from_bytes(ALICE.address.to_bytes()) == ALICE.address
    assert ViewKey.from_bytes(ALICE.view.to_bytes()) == ALICE.view
    assert PersonKey.from_bytes(ALICE.to_bytes()) == ALICE
    raw_view = ALICE.view.to_bytes()
    assert raw_view[:2] == b"\x01V" and len(raw_view) == 66
    # The view-only export holds neither the seed nor the spend scalar.
    assert ALICE.seed not in raw_view and ALICE.spend_scalar not in raw_view


def test_a_view_key_derives_the_address_but_the_reprs_hold_no_secret() -> None:
    assert ALICE.view.address == ALICE.address
    for text in (repr(ALICE), repr(ALICE.view)):
        assert ALICE.seed.hex() not in text and ALICE.view.secret.hex() not in text


@pytest.mark.parametrize(
    ("decode", "raw", "complaint"),
    [
        (ViewKey.from_bytes, ALICE.address.to_bytes(), "not a view key"),
        (Address.from_bytes, ALICE.view.to_bytes(), "not a address"),
        (Address.from_bytes, b"\x02" + ALICE.address.to_bytes()[1:], "version 2"),
        (PersonKey.from_bytes, ALICE.to_bytes()[:-1], "34 bytes"),
        (ViewKey.from_bytes, b"", "66 bytes"),
    ],
)
def test_wrong_key_bytes_are_refused_by_name(decode: object, raw: bytes, complaint: str) -> None:
    with pytest.raises(InvalidKey, match=complaint):
        decode(raw)  # type: ignore[operator]


@pytest.mark.parametrize("spend", [NEUTRAL, OFF_CURVE, b"\x05" * 31])
def test_an_address_with_a_bad_spend_key_cannot_be_made(spend: bytes) -> None:
    with pytest.raises(InvalidKey, match="spend public key"):
        Address(ALICE.address.view_public, spend)
    with pytest.raises(InvalidKey, match="spend public key"):
        ViewKey(ALICE.view.secret, spend)


@pytest.mark.parametrize(
    "view", [(FIELD_P).to_bytes(32, "little"), bytes(31) + b"\x80", b"\x09" * 33]
)
def test_an_address_with_a_non_canonical_view_key_cannot_be_made(view: bytes) -> None:
    with pytest.raises(InvalidKey, match="view public key"):
        Address(view, ALICE.spend_public)


def test_a_person_seed_has_32_bytes() -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        PersonKey(b"short")
