"""Ed25519 signatures from a raw scalar, as RFC 8032 verifiers accept them.

A one-time private key is a scalar x = s + h mod L, not an RFC 8032 seed, so
libsodium's crypto_sign cannot use it. This signs by the RFC's equations
with the scalar itself: A = xB, r = H(tag || x || A || M) mod L (deterministic,
domain-separated, as RFC 8032 derives its nonce from secret material and the
message), R = rB, k = SHA-512(R || A || M) mod L, S = r + kx mod L. The
signature R || S verifies with `nacl.signing.VerifyKey(A).verify` unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nacl.bindings as sodium

from protocol.privacy.curve import NONCE_TAG, base_times, check_scalar, hash_to_scalar

SIGNATURE_SIZE = 64


def _reduce_sha512(*parts: bytes) -> bytes:
    return sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(b"".join(parts)).digest())


def sign_with_scalar(scalar: bytes, message: bytes, public: bytes | None = None) -> bytes:
    """A 64-byte Ed25519 signature of `message` by the key `scalar` (reduced, non-zero).

    `public` (= scalar * B) saves one base multiplication when the caller has it;
    it is trusted, so pass only a value derived from this scalar.
    """
    check_scalar(scalar, "signing scalar")
    if not isinstance(message, bytes):
        raise TypeError("a message to sign is bytes")
    a_point = public if public is not None else base_times(scalar)
    nonce = hash_to_scalar(NONCE_TAG, scalar, a_point, message)
    r_point = base_times(nonce)  # nonce is 0 with probability 2^-252: base_times refuses it
    k = _reduce_sha512(r_point, a_point, message)
    k_times_a = sodium.crypto_core_ed25519_scalar_mul(k, scalar)
    return r_point + sodium.crypto_core_ed25519_scalar_add(nonce, k_times_a)


@dataclass(frozen=True, slots=True)
class OneTimeKey:
    """The private key of one grant: signs what the grantee does about that record."""

    scalar: bytes = field(repr=False)
    public: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public", base_times(self.scalar))

    def sign(self, message: bytes) -> bytes:
        return sign_with_scalar(self.scalar, message, self.public)
