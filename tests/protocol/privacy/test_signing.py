"""Ed25519 signatures from a raw scalar verify with libsodium's ordinary verify."""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.privacy import InvalidKey, OneTimeKey, sign_with_scalar
from protocol.privacy.curve import ORDER_L
from tests.protocol.privacy.people import ALICE, noise


def scalar_from(material: bytes) -> bytes:
    return sodium.crypto_core_ed25519_scalar_reduce(material)


@given(material=st.binary(min_size=64, max_size=64), message=st.binary(max_size=300))
def test_a_signature_from_any_scalar_verifies_with_the_ordinary_verify(
    material: bytes, message: bytes
) -> None:
    scalar = scalar_from(material)
    if scalar == bytes(32):
        return
    key = OneTimeKey(scalar)
    signature = key.sign(message)
    assert len(signature) == 64 and signature == sign_with_scalar(scalar, message)  # deterministic
    assert nacl.signing.VerifyKey(key.public).verify(message, signature) == message
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(key.public).verify(message + b"!", signature)


def test_a_signature_names_its_key_and_its_message() -> None:
    one, two = OneTimeKey(scalar_from(noise("one", 64))), OneTimeKey(scalar_from(noise("two", 64)))
    signature = one.sign(b"attest")
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(two.public).verify(b"attest", signature)
    assert one.sign(b"attest") != one.sign(b"attesT")  # the nonce follows the message


def test_the_persons_own_scalar_signs_for_her_ordinary_public_key() -> None:
    scalar = scalar_from(ALICE.spend_scalar + bytes(32))
    signature = sign_with_scalar(scalar, b"hello")
    nacl.signing.VerifyKey(ALICE.spend_public).verify(b"hello", signature)
    # Not the RFC 8032 nonce (that needs the seed's hash prefix), yet just as valid.
    assert signature != nacl.signing.SigningKey(ALICE.seed).sign(b"hello").signature


@pytest.mark.parametrize(
    ("scalar", "complaint"),
    [
        (b"\x01" * 31, "32 bytes"),
        (bytes(32), "zero"),
        (ORDER_L.to_bytes(32, "little"), "reduced"),
        (b"\xff" * 32, "reduced"),
    ],
)
def test_bad_scalars_are_refused_by_name(scalar: bytes, complaint: str) -> None:
    with pytest.raises(InvalidKey, match=complaint):
        sign_with_scalar(scalar, b"message")
    with pytest.raises(InvalidKey, match=complaint):
        OneTimeKey(scalar)


def test_a_message_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        sign_with_scalar(scalar_from(noise("k", 64)), "text")  # type: ignore[arg-type]
