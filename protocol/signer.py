"""Who signs: any key that can say its public key and sign bytes with it.

A node's or person's `nacl.signing.SigningKey` and a grant's one-time key
(`protocol.privacy.OneTimeKey`, a raw scalar) both sign ordinary Ed25519
signatures that `VerifyKey.verify` accepts; ledger entries and read permits
take either, so a stealth grantee acts with the grant's key P exactly as a
person acts with her long-term key.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import nacl.signing


@runtime_checkable
class Signer(Protocol):
    """An Ed25519 signer: `public` (32 bytes) and detached 64-byte signatures."""

    @property
    def public(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class KeySigner:
    """A `SigningKey` seen as a Signer (its `sign` returns a SignedMessage, not bytes)."""

    __slots__ = ("_key", "public")

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self.public = bytes(key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def as_signer(key: Signer | nacl.signing.SigningKey) -> Signer:
    """Either kind of key as a Signer."""
    if isinstance(key, nacl.signing.SigningKey):
        return KeySigner(key)
    return key
