"""Ledger entries: signed, chained, canonical, and free of health information.

An entry is the msgpack array [version, author, seq, prev, timestamp, type,
body, signature]. `seq` counts from 1 in the author's own feed and `prev` is
the hash of the author's entry at seq-1 (empty for seq 1). The signature
covers everything but itself under a domain tag; the entry's hash (its id)
covers the whole encoding under another. Bodies are maps of a type's fields
in a fixed order; decoding accepts only the exact canonical bytes, so an
entry has one encoding and one hash.

Bodies hold ids, hashes, public keys, sealed keys, sizes and times only: no
file names, no patient references, nothing readable about a patient.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.exceptions
import nacl.signing

from protocol import schema
from protocol.records import permit
from protocol.signer import Signer, as_signer

LEDGER_VERSION = 1
MAX_ENTRY_SIZE = 4096
HASH_SIZE = 32
KEY_SIZE = 32
SEALED_KEY_SIZE = 80
STEALTH_GRANT_SIZE = 114  # protocol.privacy.grant.ENCODED_SIZE (checked by a test)
MAX_GRANT_INDEX = 0xFFFF  # the index is two bytes of the grant's context
_ENTRY_TAG = b"medvault/ledger-entry/v1"
_SIGN_TAG = b"medvault/ledger-sign/v1"
RECORD_ID_TAG = b"medvault/record/v1"  # the same derivation as storage.codec.hashing


class InvalidEntry(ValueError):
    """An entry cannot be accepted; the message is the reason."""


class EntryType(enum.StrEnum):
    RECORD = "record"
    GRANT = "grant"
    REVOKE = "revoke"
    ATTEST = "attest"
    TOMBSTONE = "tombstone"
    SGRANT = "sgrant"
    CLAIM = "claim"
    ACCESS = "access"
    EMERGENCY = "emergency"
    SIGNOFF = "emergency_signoff"


def _check_len(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes")


def derive_record_id(owner: bytes, nonce: bytes) -> bytes:
    """A record id bound to its owner's key (identical to storage.codec.hashing's)."""
    hasher = hashlib.blake2b(digest_size=32, key=RECORD_ID_TAG)
    hasher.update(owner)
    hasher.update(nonce)
    return hasher.digest()


@dataclass(frozen=True)
class RecordBody:
    """A new record, owned by the author (the id proves it: it binds the owner)."""

    record_id: bytes
    nonce: bytes
    manifest_hash: bytes
    size: int
    k: int
    n: int
    owner: bytes

    def __post_init__(self) -> None:
        for value, size, what in (
            (self.record_id, 32, "record id"),
            (self.manifest_hash, HASH_SIZE, "manifest hash"),
            (self.owner, KEY_SIZE, "owner key"),
        ):
            _check_len(value, size, what)
        if not 16 <= len(self.nonce) <= 32:
            raise ValueError("record nonce must be 16..32 bytes")
        if not 1 <= self.k <= self.n <= 255 or self.size < 0:
            raise ValueError("record k, n or size out of range")


@dataclass(frozen=True)
class GrantBody:
    """The record key sealed to `grantee`; `expires_at` in ms, 0 for never."""

    record_id: bytes
    grantee: bytes
    sealed_key: bytes
    expires_at: int

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.grantee, KEY_SIZE, "grantee key")
        _check_len(self.sealed_key, SEALED_KEY_SIZE, "sealed key")
        if self.expires_at < 0:
            raise ValueError("grant expiry must be >= 0")


@dataclass(frozen=True)
class StealthGrantBody:
    """A grant that names no person: `grant` is a protocol.privacy StealthGrant (114
    bytes) whose one-time key P stands for the grantee in the state; `index` makes
    its context (`grant_context`) unique within the record; `patient`: P co-owns
    the record's sharing (may grant and revoke on it, see protocol.ledger.stealth).
    A co-owner's grant never expires (it ends by a revoke)."""

    record_id: bytes
    grant: bytes
    index: int
    expires_at: int
    patient: bool

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.grant, STEALTH_GRANT_SIZE, "stealth grant")
        if not 0 <= self.index <= MAX_GRANT_INDEX:
            raise ValueError(f"grant index must be 0..{MAX_GRANT_INDEX}")
        if self.expires_at < 0:
            raise ValueError("grant expiry must be >= 0")
        if self.patient and self.expires_at:
            raise ValueError("a co-owner (patient) grant never expires: revoke it instead")

    @property
    def one_time(self) -> bytes:
        """P, the grant's one-time public key (bytes 34..66 of the encoded grant)."""
        return self.grant[34:66]

    @property
    def context(self) -> bytes:
        return grant_context(self.record_id, self.index)


def grant_context(record_id: bytes, index: int) -> bytes:
    """The context a stealth grant is made, scanned and opened with: id || index (2 bytes)."""
    return record_id + index.to_bytes(2, "big")


@dataclass(frozen=True)
class RevokeBody:
    """Ends the grant to `grantee`: a long-term key (old grants) or a stealth grant's P."""

    record_id: bytes
    grantee: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.grantee, KEY_SIZE, "grantee key")


@dataclass(frozen=True)
class AttestBody:
    """The author (typically the patient) confirms this manifest is about them and correct."""

    record_id: bytes
    manifest_hash: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.manifest_hash, HASH_SIZE, "manifest hash")


MAX_SEALED_DISCLOSURE = 1024  # protocol.claims.disclosure keeps its plaintext below this


@dataclass(frozen=True)
class ClaimBody:
    """An attestation that also discloses (protocol.claims): `disclosure` commits to the
    fields she chose to show (salted hash), `sealed` carries them under a key derived
    from the record key, so only holders of a grant of the record can read them."""

    record_id: bytes
    manifest_hash: bytes
    disclosure: bytes
    sealed: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.manifest_hash, HASH_SIZE, "manifest hash")
        _check_len(self.disclosure, HASH_SIZE, "disclosure commitment")
        if not 40 <= len(self.sealed) <= MAX_SEALED_DISCLOSURE:
            raise ValueError(f"sealed disclosure must be 40..{MAX_SEALED_DISCLOSURE} bytes")


MAX_SEALED_TEXT = 1024 + 40  # protocol.emergency.sealing: nonce, MAC, at most 1024 bytes


@dataclass(frozen=True)
class EmergencyBody:
    """The owner granted `requester` (a node key) break-glass access until `expires_at`
    (ms); `reason` is the requester's reason sealed under a key derived from the record
    key (protocol.emergency.sealing): only holders of a grant of the record read it."""

    record_id: bytes
    requester: bytes
    expires_at: int
    reason: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.requester, KEY_SIZE, "requester key")
        if self.expires_at <= 0:
            raise ValueError("an emergency grant always expires (expires_at > 0)")
        if not 40 <= len(self.reason) <= MAX_SEALED_TEXT:
            raise ValueError(f"sealed reason must be 40..{MAX_SEALED_TEXT} bytes")


@dataclass(frozen=True)
class EmergencySignoffBody:
    """The owner's operator reviewed the emergency access entry `emergency` (its hash);
    `note` is sealed like the reason."""

    record_id: bytes
    emergency: bytes
    note: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        _check_len(self.emergency, HASH_SIZE, "emergency entry hash")
        if not 40 <= len(self.note) <= MAX_SEALED_TEXT:
            raise ValueError(f"sealed note must be 40..{MAX_SEALED_TEXT} bytes")


@dataclass(frozen=True)
class TombstoneBody:
    """The owner asks for erasure: holders delete shards, grants end."""

    record_id: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")


@dataclass(frozen=True)
class AccessBody:
    """A read happened: the reader's signed access statement (protocol.records.permit,
    version 2), logged by the reader's node or by a holder that served it. The
    statement must verify here, so nobody logs a read in a reader's name; its
    record must be this body's."""

    record_id: bytes
    statement: bytes

    def __post_init__(self) -> None:
        _check_len(self.record_id, 32, "record id")
        try:
            decoded = permit.decode(self.statement)
        except permit.PermitError as exc:
            raise ValueError(f"access statement: {exc}") from None
        if decoded.record_id != self.record_id:
            raise ValueError("access statement is for another record")

    @property
    def decoded(self) -> permit.ReadPermit:
        return permit.decode(self.statement)


Body = (
    RecordBody
    | GrantBody
    | RevokeBody
    | AttestBody
    | TombstoneBody
    | StealthGrantBody
    | ClaimBody
    | AccessBody
    | EmergencyBody
    | EmergencySignoffBody
)

BODY_TYPES: dict[EntryType, type[Body]] = {
    EntryType.RECORD: RecordBody,
    EntryType.GRANT: GrantBody,
    EntryType.REVOKE: RevokeBody,
    EntryType.ATTEST: AttestBody,
    EntryType.TOMBSTONE: TombstoneBody,
    EntryType.SGRANT: StealthGrantBody,
    EntryType.CLAIM: ClaimBody,
    EntryType.ACCESS: AccessBody,
    EntryType.EMERGENCY: EmergencyBody,
    EntryType.SIGNOFF: EmergencySignoffBody,
}
_TYPE_OF: dict[type, EntryType] = {cls: kind for kind, cls in BODY_TYPES.items()}


@dataclass(frozen=True)
class Entry:
    author: bytes
    seq: int
    prev: bytes
    timestamp: int
    type: EntryType
    body: Body
    signature: bytes
    raw: bytes
    hash: bytes

    @property
    def record_id(self) -> bytes:
        return self.body.record_id

    def __repr__(self) -> str:
        return f"Entry({self.type} {self.author.hex()[:8]}#{self.seq} {self.hash.hex()[:12]})"


def _unsigned(
    author: bytes, seq: int, prev: bytes, timestamp: int, *, kind: EntryType, body: Any
) -> list[Any]:
    return [LEDGER_VERSION, author, seq, prev, timestamp, str(kind), body]


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def entry_hash(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=HASH_SIZE, key=_ENTRY_TAG).digest()


def sign_entry(
    key: Signer | nacl.signing.SigningKey, seq: int, prev: bytes, timestamp: int, body: Body
) -> Entry:
    """Create the author's entry number `seq` following the entry hashed `prev`
    (the author: a node's or person's key, or a stealth grant's one-time key)."""
    signer = as_signer(key)
    kind = _TYPE_OF[type(body)]
    author = signer.public
    fields = _unsigned(
        author, seq, prev, timestamp, kind=kind, body=schema.encoder(type(body))(body)
    )
    signature = signer.sign(_SIGN_TAG + _pack(fields))
    raw = _pack([*fields, signature])
    if len(raw) > MAX_ENTRY_SIZE:
        raise ValueError(f"entry of {len(raw)} bytes exceeds {MAX_ENTRY_SIZE}")
    return decode_entry(raw)


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")


def decode_entry(raw: bytes) -> Entry:
    """Parse and verify one entry (shape, canonical form, signature); InvalidEntry if not."""
    if len(raw) > MAX_ENTRY_SIZE:
        raise InvalidEntry(f"oversize entry: {len(raw)} bytes, limit {MAX_ENTRY_SIZE}")
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except Exception as exc:
        raise InvalidEntry(f"malformed entry ({type(exc).__name__})") from None
    if not isinstance(value, list) or len(value) != 8:
        raise InvalidEntry("malformed entry: not an 8-field array")
    version, author, seq, prev, timestamp, kind_name, body_value, signature = value
    if version != LEDGER_VERSION:
        raise InvalidEntry(f"unsupported ledger version {version!r}")
    if not (isinstance(author, bytes) and len(author) == KEY_SIZE):
        raise InvalidEntry("malformed entry: author must be a 32-byte key")
    if type(seq) is not int or seq < 1 or type(timestamp) is not int or timestamp < 0:
        raise InvalidEntry("malformed entry: seq and timestamp must be positive integers")
    if not isinstance(prev, bytes) or len(prev) != (0 if seq == 1 else HASH_SIZE):
        raise InvalidEntry("malformed entry: previous hash has the wrong length for its seq")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise InvalidEntry("malformed entry: signature must be 64 bytes")
    try:
        kind = EntryType(kind_name)
    except ValueError:
        raise InvalidEntry(f"unknown entry type {kind_name!r}") from None
    try:
        body = schema.decoder(BODY_TYPES[kind])(body_value)
    except schema.SchemaError as exc:
        raise InvalidEntry(f"malformed {kind} body: {exc}") from None
    # Re-encode from the decoded body (fields in their fixed order): any other
    # ordering, integer width or key set yields different bytes and is refused.
    fields = _unsigned(
        author, seq, prev, timestamp, kind=kind, body=schema.encoder(type(body))(body)
    )
    if _pack([*fields, signature]) != raw:
        raise InvalidEntry("entry is not in canonical encoding")
    try:
        nacl.signing.VerifyKey(author).verify(_SIGN_TAG + _pack(fields), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise InvalidEntry("bad signature: not signed by its author") from None
    return Entry(author, seq, prev, timestamp, kind, body, signature, raw, entry_hash(raw))
