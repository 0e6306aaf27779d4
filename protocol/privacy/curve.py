"""Checked Ed25519/X25519 arithmetic on libsodium, and the hashes of the construction.

Scalars are 32 little-endian bytes, reduced mod the group order L; Edwards
points are RFC 8032 encodings, Montgomery points X25519 u-coordinates. Every
check raises InvalidKey with what was wrong. The two conversions between the
curve forms (u = (1+y)/(1-y), y = (u-1)/(u+1)) are a field inversion in Python:
they run only when a grant matched, never in the per-grant scan.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import nacl.exceptions

from protocol.privacy.errors import InvalidKey

SIZE = 32
FIELD_P = 2**255 - 19
ORDER_L = 2**252 + 27742317777372353535851937790883648493
_SIGN_BIT = 1 << 255

# Every hash of the construction carries its own domain tag (the BLAKE2b key).
VIEW_KEY_TAG = b"medvault/privacy/view-key/v1"
EPHEMERAL_TAG = b"medvault/privacy/ephemeral/v1"
VIEW_TAG_TAG = b"medvault/privacy/view-tag/v1"
BLIND_TAG = b"medvault/privacy/one-time-blind/v1"
SEAL_TAG = b"medvault/privacy/grant-seal/v1"
NONCE_TAG = b"medvault/privacy/one-time-sign-nonce/v1"


def tagged(tag: bytes, *parts: bytes, size: int = SIZE) -> bytes:
    """BLAKE2b of the concatenated parts under domain `tag` (fixed-size parts first)."""
    hasher = hashlib.blake2b(digest_size=size, key=tag)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def hash_to_scalar(tag: bytes, *parts: bytes) -> bytes:
    """A uniform scalar mod L: 512 bits of tagged BLAKE2b, reduced (no modulo bias)."""
    return sodium.crypto_core_ed25519_scalar_reduce(tagged(tag, *parts, size=64))


def check_length(value: bytes, what: str, size: int = SIZE) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise InvalidKey(f"{what} must be {size} bytes")
    return value


def check_scalar(value: bytes, what: str) -> bytes:
    """A canonical (< L), non-zero scalar."""
    number = int.from_bytes(check_length(value, what), "little")
    if number >= ORDER_L:
        raise InvalidKey(f"{what} is not a reduced scalar (>= the group order)")
    if number == 0:
        raise InvalidKey(f"{what} is zero")
    return value


def check_edwards(value: bytes, what: str) -> bytes:
    """A canonical Ed25519 point of the prime-order subgroup (not of small order)."""
    if not sodium.crypto_core_ed25519_is_valid_point(check_length(value, what)):
        raise InvalidKey(f"{what} is not a valid Ed25519 point (off the curve or small order)")
    return value


def check_montgomery(value: bytes, what: str) -> bytes:
    """A canonical X25519 u-coordinate: below p, top bit clear (no second encoding)."""
    if int.from_bytes(check_length(value, what), "little") >= FIELD_P:
        raise InvalidKey(f"{what} is not a canonical X25519 public key")
    return value


def x25519(scalar: bytes, point: bytes, what: str) -> bytes:
    """Clamped X25519; a small-order `point` (all-zero result) raises InvalidKey."""
    try:
        return sodium.crypto_scalarmult(scalar, point)
    except nacl.exceptions.CryptoError:
        raise InvalidKey(f"{what} is of small order") from None


def base_times(scalar: bytes) -> bytes:
    """scalar * B on Ed25519 (no clamping); the scalar is checked non-zero and reduced."""
    return sodium.crypto_scalarmult_ed25519_base_noclamp(check_scalar(scalar, "scalar"))


def times(scalar: bytes, point: bytes, what: str) -> bytes:
    """scalar * point on Ed25519 (no clamping), for a valid point of the main subgroup."""
    try:
        return sodium.crypto_scalarmult_ed25519_noclamp(check_scalar(scalar, "scalar"), point)
    except nacl.exceptions.CryptoError:
        raise InvalidKey(f"{what} is not a valid Ed25519 point") from None


def edwards_to_montgomery(point: bytes) -> bytes:
    """The X25519 u-coordinate of an Edwards point: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(point, "little") & (_SIGN_BIT - 1)
    if y == 1:
        raise InvalidKey("the neutral point has no X25519 form")
    u = (1 + y) * pow(1 - y, -1, FIELD_P) % FIELD_P
    return u.to_bytes(SIZE, "little")


def montgomery_to_edwards(u_bytes: bytes) -> bytes:
    """One of the two Edwards points over a u-coordinate (sign bit 0): y = (u-1)/(u+1).

    X25519 forgets the sign, so callers use this only where ±P give the same
    answer (the u-coordinate of a multiple). The result is not checked to be on
    the curve: `times` does that.
    """
    u = int.from_bytes(check_montgomery(u_bytes, "X25519 public key"), "little")
    if u == FIELD_P - 1:
        raise InvalidKey("X25519 public key -1 has no Edwards form")
    y = (u - 1) * pow(u + 1, -1, FIELD_P) % FIELD_P
    return y.to_bytes(SIZE, "little")
