"""A stealth grant: a record key sealed to a person's address, naming no key of hers.

Made by the granting hospital from the grantee's address, 32 random bytes and
the record key (CryptoNote/Monero dual-key stealth outputs with a view tag,
the one-time key blinded additively as Tor v3 blinds onion-service keys):

    r  = BLAKE2b(random || address || record key || context)   (hedged: random
         bytes reused by mistake still give distinct grants for distinct keys)
    E  = X25519(r, base)                      ephemeral public key, in the grant
    d  = X25519(r, V) = X25519(v, E)          view shared secret
    t  = BLAKE2b_1(d || E || context)         one-byte view tag, in the grant
    h  = BLAKE2b_64(d || E || context) mod L  blinding scalar
    P  = S + hB                               one-time public key, in the grant
    z  = X25519(r, u(P)) = u(x * ±E)          x = s + h: needs the spend secret
    K  = BLAKE2b(d || z || E || P || context) sealing key (used once)
    c  = XChaCha20-Poly1305(K, record key; ad = version, E, t, P, context)

`context` is public and known to the scanner (the integrator passes the
record id and an output index): it binds the grant to where it stands, so a
grant copied under another record matches nobody, and two grants to the same
person from one random value stay distinct. Everything here is pure: the
random bytes are a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings as sodium

from protocol.privacy.curve import (
    BLIND_TAG,
    EPHEMERAL_TAG,
    SEAL_TAG,
    SIZE,
    VIEW_TAG_TAG,
    base_times,
    check_length,
    edwards_to_montgomery,
    hash_to_scalar,
    tagged,
    x25519,
)
from protocol.privacy.errors import InvalidKey, MalformedGrant
from protocol.privacy.keys import Address

GRANT_VERSION = 1
RECORD_KEY_SIZE = 32
SEALED_SIZE = RECORD_KEY_SIZE + sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
ENCODED_SIZE = 1 + SIZE + 1 + SIZE + SEALED_SIZE  # 114 bytes
_NONCE = bytes(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)  # K is used once
_FIELD_P = 2**255 - 19


@dataclass(frozen=True, slots=True)
class StealthGrant:
    """The public part of a grant, as it stands in the ledger. Checks shapes only:
    whether the points are valid is the scanner's question (cheap per grant)."""

    ephemeral: bytes  # E: X25519 u-coordinate
    view_tag: int  # t: 0..255
    one_time: bytes  # P: Ed25519 point
    sealed_key: bytes  # c: 48 bytes

    def __post_init__(self) -> None:
        if not isinstance(self.ephemeral, bytes) or len(self.ephemeral) != SIZE:
            raise MalformedGrant("a grant's ephemeral key is 32 bytes")
        if int.from_bytes(self.ephemeral, "little") >= _FIELD_P:
            raise MalformedGrant("a grant's ephemeral key is not a canonical X25519 key")
        if type(self.view_tag) is not int or not 0 <= self.view_tag <= 255:
            raise MalformedGrant("a grant's view tag is one byte")
        if not isinstance(self.one_time, bytes) or len(self.one_time) != SIZE:
            raise MalformedGrant("a grant's one-time key is 32 bytes")
        if not isinstance(self.sealed_key, bytes) or len(self.sealed_key) != SEALED_SIZE:
            raise MalformedGrant(f"a grant's sealed key is {SEALED_SIZE} bytes")

    def to_bytes(self) -> bytes:
        """version || E || t || P || c: 114 bytes, msgpack-friendly."""
        return (
            bytes([GRANT_VERSION, *self.ephemeral, self.view_tag]) + self.one_time + self.sealed_key
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> StealthGrant:
        if not isinstance(raw, bytes) or len(raw) != ENCODED_SIZE:
            raise MalformedGrant(f"an encoded grant is {ENCODED_SIZE} bytes")
        if raw[0] != GRANT_VERSION:
            raise MalformedGrant(f"unsupported grant version {raw[0]}")
        return cls(raw[1:33], raw[33], raw[34:66], raw[66:])

    def associated_data(self, context: bytes) -> bytes:
        """What the sealed key's MAC binds besides itself: every other field and the context."""
        return bytes([GRANT_VERSION, *self.ephemeral, self.view_tag]) + self.one_time + context


def view_tag(shared: bytes, ephemeral: bytes, context: bytes) -> int:
    return tagged(VIEW_TAG_TAG, shared, ephemeral, context, size=1)[0]


def blinding_scalar(shared: bytes, ephemeral: bytes, context: bytes) -> bytes:
    return hash_to_scalar(BLIND_TAG, shared, ephemeral, context)


def blind(spend_public: bytes, h: bytes) -> bytes:
    """P = S + hB (additive blinding); S was checked to be a valid point."""
    return sodium.crypto_core_ed25519_add(spend_public, base_times(h))


def sealing_key(
    shared: bytes, seal_secret: bytes, ephemeral: bytes, one_time: bytes, context: bytes
) -> bytes:
    return tagged(SEAL_TAG, shared, seal_secret, ephemeral, one_time, context)


def make_grant(
    address: Address, record_key: bytes, random: bytes, context: bytes = b""
) -> StealthGrant:
    """A grant of `record_key` to `address`; `random` is 32 fresh random bytes per grant."""
    check_length(record_key, "record key", RECORD_KEY_SIZE)
    check_length(random, "grant randomness")
    if not isinstance(context, bytes):
        raise TypeError("a grant's context is bytes")
    view_public, spend_public = address.view_public, address.spend_public
    ephemeral_secret = tagged(EPHEMERAL_TAG, random, view_public, spend_public, record_key, context)
    ephemeral = sodium.crypto_scalarmult_base(ephemeral_secret)
    shared = x25519(ephemeral_secret, view_public, "view public key")
    h = blinding_scalar(shared, ephemeral, context)
    one_time = blind(spend_public, h)
    if one_time == bytes([1]) + bytes(31):  # h = -s: needs the discrete log of S
        raise InvalidKey("the blinded key is the neutral point")
    seal_secret = x25519(ephemeral_secret, edwards_to_montgomery(one_time), "one-time key")
    tag = view_tag(shared, ephemeral, context)
    unsealed = StealthGrant(ephemeral, tag, one_time, bytes(SEALED_SIZE))
    sealed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        record_key,
        unsealed.associated_data(context),
        _NONCE,
        sealing_key(shared, seal_secret, ephemeral, one_time, context),
    )
    return StealthGrant(ephemeral, tag, one_time, sealed)
