"""A person's dual key from one seed: a view part that finds grants, a spend part that acts.

One 32-byte seed (the person's existing key file) gives both parts:

- spend: the RFC 8032 Ed25519 key of the seed, so the spend public key is the
  person's long-standing public key and grants sealed to it before stay
  readable. Its secret scalar opens grants and signs with one-time keys.
- view: an X25519 secret = BLAKE2b(seed) under its own domain tag. It finds the
  grants to the person and cannot open or sign: the spend scalar is not
  derivable from it (nor the seed).

The address (view public, spend public) is what a hospital needs to grant to
the person; a view-only key (view secret, spend public) is what a health card
or an app needs to find her grants. All three serialise as bytes with a
version and a kind byte, so a `keys export-view` can write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.bindings as sodium
import nacl.signing

from protocol.privacy.curve import (
    SIZE,
    VIEW_KEY_TAG,
    check_edwards,
    check_length,
    check_montgomery,
    tagged,
)
from protocol.privacy.errors import InvalidKey

KEY_VERSION = 1
KIND_ADDRESS = b"A"
KIND_VIEW = b"V"
KIND_PERSON = b"S"


def _decode(raw: bytes, kind: bytes, size: int, what: str) -> bytes:
    """The payload of `version || kind || payload`, or InvalidKey saying what is wrong."""
    if not isinstance(raw, bytes) or len(raw) != 2 + size:
        raise InvalidKey(f"an encoded {what} is {2 + size} bytes")
    if raw[0] != KEY_VERSION:
        raise InvalidKey(f"unsupported {what} version {raw[0]}")
    if raw[1:2] != kind:
        raise InvalidKey(f"these bytes are not a {what} (kind {raw[1:2]!r})")
    return raw[2:]


@dataclass(frozen=True, slots=True)
class Address:
    """Public: where grants to a person go. Safe to hand to any hospital."""

    view_public: bytes  # X25519 u-coordinate
    spend_public: bytes  # Ed25519 point: the person's public key

    def __post_init__(self) -> None:
        check_montgomery(self.view_public, "view public key")
        check_edwards(self.spend_public, "spend public key")

    def to_bytes(self) -> bytes:
        return bytes([KEY_VERSION]) + KIND_ADDRESS + self.view_public + self.spend_public

    @classmethod
    def from_bytes(cls, raw: bytes) -> Address:
        payload = _decode(raw, KIND_ADDRESS, 2 * SIZE, "address")
        return cls(payload[:SIZE], payload[SIZE:])


@dataclass(frozen=True, slots=True)
class ViewKey:
    """Finds a person's grants (view secret + spend public); cannot open or sign them."""

    secret: bytes = field(repr=False)  # X25519 secret
    spend_public: bytes

    def __post_init__(self) -> None:
        check_length(self.secret, "view secret")
        check_edwards(self.spend_public, "spend public key")

    @property
    def address(self) -> Address:
        return Address(sodium.crypto_scalarmult_base(self.secret), self.spend_public)

    def to_bytes(self) -> bytes:
        return bytes([KEY_VERSION]) + KIND_VIEW + self.secret + self.spend_public

    @classmethod
    def from_bytes(cls, raw: bytes) -> ViewKey:
        payload = _decode(raw, KIND_VIEW, 2 * SIZE, "view key")
        return cls(payload[:SIZE], payload[SIZE:])


@dataclass(frozen=True, slots=True)
class PersonKey:
    """The whole key of one person, from her 32-byte seed: finds, opens and signs."""

    seed: bytes = field(repr=False)
    view: ViewKey = field(init=False, repr=False)
    spend_scalar: bytes = field(init=False, repr=False)  # clamped, not reduced (RFC 8032)

    def __post_init__(self) -> None:
        check_length(self.seed, "person seed")
        signing = nacl.signing.SigningKey(self.seed)
        secret64 = bytes(signing) + bytes(signing.verify_key)
        object.__setattr__(
            self, "spend_scalar", sodium.crypto_sign_ed25519_sk_to_curve25519(secret64)
        )
        view_secret = tagged(VIEW_KEY_TAG, self.seed)
        object.__setattr__(self, "view", ViewKey(view_secret, bytes(signing.verify_key)))

    @classmethod
    def from_signing_key(cls, key: nacl.signing.SigningKey) -> PersonKey:
        """The dual key of an existing person key file (its Ed25519 seed)."""
        return cls(bytes(key))

    @property
    def address(self) -> Address:
        return self.view.address

    @property
    def spend_public(self) -> bytes:
        return self.view.spend_public

    def to_bytes(self) -> bytes:
        return bytes([KEY_VERSION]) + KIND_PERSON + self.seed

    @classmethod
    def from_bytes(cls, raw: bytes) -> PersonKey:
        return cls(_decode(raw, KIND_PERSON, SIZE, "person key"))
