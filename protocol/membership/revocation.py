"""Node revocations: an authority says a node key is no longer a member.

A revocation is [version, node_key, revoked_at, authority, signature] in
canonical msgpack, signed by a network authority over its own domain tag
(a certificate's signature can never pass for a revocation's). It is
permanent: a revoked key stays refused (the node gets a new key and a new
certificate). Nodes keep the revocations they know and hand them to every
peer they connect to, so one published at any node reaches every node.

`RevocationList` decides what a node keeps, and is built so that gossip
ends and a member cannot make a node work without bound: a revocation of a
key already revoked changes nothing and costs no signature check; one not
claiming a configured authority is refused before any cryptography; an
authority's own key cannot be revoked; and at most `MAX_REVOCATIONS` are
kept (only an authority can make more, and it has better ways to end a
network).

Pure: no clock (`revoked_at` is a parameter), no randomness.
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

REVOCATION_VERSION = 1
KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_ENCODED = 160  # bytes: a revocation is ~145
MAX_REVOCATIONS = 4096  # kept per node; a new one beyond is refused (logged)
_SIGN_TAG = b"medvault membership revocation v1\x00"
TEXT_PREFIX = "medvault-revocation-v1:"


class RevocationError(Exception):
    """A revocation that does not decode or does not hold; the message says why."""


class ForgedRevocation(RevocationError):
    """A revocation whose signature is not its authority's: made by someone else."""


@dataclass(frozen=True)
class Revocation:
    node_key: bytes
    revoked_at: int  # ms since the epoch, when the admin made it (informative)
    authority: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.node_key, bytes) or len(self.node_key) != KEY_SIZE:
            raise RevocationError("a revocation's node key is 32 bytes")
        if not isinstance(self.authority, bytes) or len(self.authority) != KEY_SIZE:
            raise RevocationError("a revocation's authority key is 32 bytes")
        if type(self.revoked_at) is not int or not 0 <= self.revoked_at < 2**63:
            raise RevocationError("revoked_at must be a non-negative integer (ms)")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise RevocationError("a revocation's signature is 64 bytes")

    def _fields(self) -> list[Any]:
        return [REVOCATION_VERSION, self.node_key, self.revoked_at, self.authority]

    def signed_bytes(self) -> bytes:
        return _SIGN_TAG + _pack(self._fields())

    def encode(self) -> bytes:
        return _pack([*self._fields(), self.signature])

    def text(self) -> str:
        """One line an admin can mail or paste: a prefix, then base64."""
        return TEXT_PREFIX + base64.b64encode(self.encode()).decode("ascii")


def revoke(authority: nacl.signing.SigningKey, node_key: bytes, *, revoked_at: int) -> Revocation:
    """A revocation of `node_key`, signed by `authority`."""
    unsigned = Revocation(node_key, revoked_at, bytes(authority.verify_key), b"\0" * 64)
    signature = authority.sign(unsigned.signed_bytes()).signature
    return Revocation(node_key, revoked_at, unsigned.authority, signature)


def parse(raw: bytes) -> Revocation:
    """The revocation `raw` encodes canonically, its signature NOT yet checked."""
    if not isinstance(raw, bytes) or len(raw) > MAX_ENCODED:
        raise RevocationError(f"a revocation is at most {MAX_ENCODED} bytes")
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except Exception as exc:  # msgpack raises many types on garbage
        raise RevocationError(f"not a revocation ({type(exc).__name__})") from None
    if not isinstance(value, list) or len(value) != 5:
        raise RevocationError("not a revocation: expected 5 fields")
    version, node_key, revoked_at, authority, signature = value
    if version != REVOCATION_VERSION or type(version) is not int:
        raise RevocationError(f"unsupported revocation version {version!r}")
    revocation = Revocation(node_key, revoked_at, authority, signature)
    if revocation.encode() != raw:
        raise RevocationError("revocation is not in canonical encoding")
    return revocation


def verify(revocation: Revocation) -> None:
    """RevocationError unless the revocation's authority signed it."""
    try:
        nacl.signing.VerifyKey(revocation.authority).verify(
            revocation.signed_bytes(), revocation.signature
        )
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise ForgedRevocation("bad revocation signature") from None


def decode(raw: bytes) -> Revocation:
    """Parse a revocation and check its own signature (not who signed it)."""
    revocation = parse(raw)
    verify(revocation)
    return revocation


def from_text(text: str) -> Revocation:
    """The revocation in `Revocation.text()` form (surrounding whitespace ignored)."""
    text = text.strip()
    if not text.startswith(TEXT_PREFIX):
        raise RevocationError(f"a revocation starts with {TEXT_PREFIX!r}")
    body = text[len(TEXT_PREFIX) :]
    if len(body) > 4 * MAX_ENCODED:
        raise RevocationError(f"a revocation is at most {MAX_ENCODED} bytes")
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise RevocationError("a revocation's text is not base64") from None
    return decode(raw)


def check(revocation: Revocation, authorities: Collection[bytes]) -> None:
    """RevocationError unless a configured authority made it, for a key that is not one."""
    if revocation.authority not in authorities:
        raise RevocationError("the revocation is not signed by this network's authority")
    if revocation.node_key in authorities:
        raise RevocationError("an authority's key cannot be revoked")


class RevocationList:
    """The revocations a node keeps: valid ones only, one per node key, at most `limit`."""

    def __init__(self, authorities: Collection[bytes], limit: int = MAX_REVOCATIONS) -> None:
        self.authorities = frozenset(authorities)
        self.limit = limit
        self._by_key: dict[bytes, Revocation] = {}

    def __contains__(self, node_key: object) -> bool:
        return node_key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, node_key: bytes) -> Revocation | None:
        return self._by_key.get(node_key)

    def all(self) -> list[Revocation]:
        """Every revocation kept, oldest first."""
        return sorted(self._by_key.values(), key=lambda r: (r.revoked_at, r.node_key))

    def learn(self, revocation: Revocation) -> bool:
        """Keep `revocation`: True if it revokes a key not revoked before, False if it
        changes nothing; RevocationError when it is not valid here or the list is full."""
        if revocation.node_key in self._by_key:
            return False  # whoever signed it, it changes nothing: no signature to check
        check(revocation, self.authorities)
        if len(self._by_key) >= self.limit:
            raise RevocationError(f"this node keeps at most {self.limit} revocations")
        verify(revocation)
        self._by_key[revocation.node_key] = revocation
        return True

    def learn_raw(self, raw: bytes) -> Revocation | None:
        """`learn` for an encoded revocation: the revocation if new, None if it changes
        nothing; RevocationError when it does not decode or is not valid here."""
        revocation = parse(raw)
        return revocation if self.learn(revocation) else None


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")
