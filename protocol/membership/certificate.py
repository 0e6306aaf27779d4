"""Membership certificates: an authority vouches that a node key belongs to a site.

A network has one or more authority keys (Ed25519, kept offline by its
operators). A certificate binds a node's public key to its site, from
`issued_at` until `expires_at` (ms since the epoch, 0: never), signed by one
authority over a domain-separated canonical encoding. Nodes exchange
certificates right after the secret handshake and refuse a peer without a
valid one for the key it authenticated with; a node's site is what its
certificate says, never its own claim, and every identity costs an admin's
signature (no ground node ids, no made-up sites).

Pure: no clock (`now_ms` is a parameter), no randomness (Ed25519 signing is
deterministic).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.exceptions
import nacl.signing

CERT_VERSION = 1
KEY_SIZE = 32
MAX_SITE_LENGTH = 64
MAX_ENCODED = 512  # bytes: a certificate is ~200
_SIGN_TAG = b"medvault membership certificate v1\x00"
TEXT_PREFIX = "medvault-certificate-v1:"
# An admin's offline machine may run ahead of the nodes' clocks: certificates are
# issued valid from this long before the moment they are made.
ISSUE_SKEW_MS = 3_600_000


class CertificateError(Exception):
    """A certificate that does not decode or does not hold; the message says why."""


@dataclass(frozen=True)
class Certificate:
    node_key: bytes
    site: str
    issued_at: int
    expires_at: int  # 0: never
    authority: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.node_key, bytes) or len(self.node_key) != KEY_SIZE:
            raise CertificateError("a certificate's node key is 32 bytes")
        if not isinstance(self.authority, bytes) or len(self.authority) != KEY_SIZE:
            raise CertificateError("a certificate's authority key is 32 bytes")
        if not isinstance(self.site, str) or not 0 < len(self.site) <= MAX_SITE_LENGTH:
            raise CertificateError(f"a site is 1..{MAX_SITE_LENGTH} characters")
        if not self.site.isprintable():
            raise CertificateError("a site has no control characters")
        for name in ("issued_at", "expires_at"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < 2**63:
                raise CertificateError(f"{name} must be a non-negative integer (ms)")
        if self.expires_at and self.expires_at <= self.issued_at:
            raise CertificateError("a certificate expires after it is issued")
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise CertificateError("a certificate's signature is 64 bytes")

    def _fields(self) -> list[Any]:
        return [
            CERT_VERSION,
            self.node_key,
            self.site,
            self.issued_at,
            self.expires_at,
            self.authority,
        ]

    def encode(self) -> bytes:
        return _pack([*self._fields(), self.signature])

    def text(self) -> str:
        """One line an operator can mail or paste: a prefix, then base64."""
        return TEXT_PREFIX + base64.b64encode(self.encode()).decode("ascii")

    def active(self, now_ms: int) -> bool:
        return self.issued_at <= now_ms and (self.expires_at == 0 or now_ms < self.expires_at)


def issue(
    authority: nacl.signing.SigningKey,
    node_key: bytes,
    site: str,
    *,
    issued_at: int,
    expires_at: int = 0,
) -> Certificate:
    """A certificate for `node_key` at `site`, signed by `authority`."""
    unsigned = Certificate(
        node_key, site, issued_at, expires_at, bytes(authority.verify_key), b"\0" * 64
    )
    signature = authority.sign(_SIGN_TAG + _pack(unsigned._fields())).signature
    return Certificate(node_key, site, issued_at, expires_at, unsigned.authority, signature)


def decode(raw: bytes) -> Certificate:
    """Parse a certificate and check its own signature (not who signed it, nor when)."""
    if len(raw) > MAX_ENCODED:
        raise CertificateError(f"a certificate is at most {MAX_ENCODED} bytes")
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except Exception as exc:  # msgpack raises many types on garbage
        raise CertificateError(f"not a certificate ({type(exc).__name__})") from None
    if not isinstance(value, list) or len(value) != 7:
        raise CertificateError("not a certificate: expected 7 fields")
    version, node_key, site, issued_at, expires_at, authority, signature = value
    if version != CERT_VERSION:
        raise CertificateError(f"unsupported certificate version {version!r}")
    cert = Certificate(node_key, site, issued_at, expires_at, authority, signature)
    if cert.encode() != raw:
        raise CertificateError("certificate is not in canonical encoding")
    try:
        nacl.signing.VerifyKey(authority).verify(_SIGN_TAG + _pack(cert._fields()), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise CertificateError("bad certificate signature") from None
    return cert


def from_text(text: str) -> Certificate:
    """The certificate in `Certificate.text()` form (surrounding whitespace ignored)."""
    text = text.strip()
    if not text.startswith(TEXT_PREFIX):
        raise CertificateError(f"a certificate starts with {TEXT_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(TEXT_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("a certificate's text is not base64") from None
    return decode(raw)


def check(
    cert: Certificate, *, node_key: bytes, authorities: Collection[bytes], now_ms: int
) -> None:
    """CertificateError unless `cert` is a current certificate of `node_key` by an authority."""
    if cert.node_key != node_key:
        raise CertificateError("the certificate is for another key")
    if cert.authority not in authorities:
        raise CertificateError("the certificate is not signed by this network's authority")
    if cert.issued_at > now_ms:
        raise CertificateError("the certificate is not valid yet")
    if cert.expires_at and cert.expires_at <= now_ms:
        raise CertificateError("the certificate has expired")


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")
