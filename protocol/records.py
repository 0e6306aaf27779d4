"""DHT records: values with per-kind validators, provider records, TTLs.

A value record names its validator (`kind`):
- "blob": immutable, content-addressed: the key is the tagged BLAKE2b-160 of
  the value, so any copy that validates is the same;
- "signed": mutable, owned: the key is the tagged BLAKE2b-160 of publisher
  key and name, the publisher signs every version, and the newest valid
  version (highest seq, then largest value bytes) wins wherever it lands.

A provider record says "this node holds data for key K"; a node may announce
only itself (the service checks the announced key is the caller's
authenticated key). Both expire `ttl` seconds after being stored (capped),
and the store refuses more than its limits so one peer cannot fill it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import msgpack
import nacl.exceptions
import nacl.signing

from protocol.contact import ContactInfo
from protocol.ids import NODE_ID_SIZE, PUBLIC_KEY_SIZE

MAX_VALUE_SIZE = 64 * 1024
MAX_NAME_SIZE = 256
MAX_TTL = 7 * 24 * 3600
_BLOB_TAG = b"medvault/dht-blob/v1"
_SIGNED_TAG = b"medvault/dht-signed/v1"
_SIGNATURE_TAG = b"medvault/dht-record-signature/v1"


class InvalidRecord(ValueError):
    """A record fails its validator; the message says why."""


def _key(tag: bytes, *parts: bytes) -> bytes:
    hasher = hashlib.blake2b(digest_size=NODE_ID_SIZE, key=tag)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def blob_key(value: bytes) -> bytes:
    return _key(_BLOB_TAG, value)


def signed_key(publisher: bytes, name: bytes) -> bytes:
    return _key(_SIGNED_TAG, publisher, len(name).to_bytes(2, "big"), name)


@dataclass(frozen=True)
class ValueRecord:
    key: bytes
    kind: str
    value: bytes
    publisher: bytes
    name: bytes = b""
    seq: int = 0
    ttl: int = MAX_TTL
    signature: bytes = b""

    def signed_bytes(self) -> bytes:
        fields = [self.key, self.kind, self.value, self.publisher, self.name, self.seq, self.ttl]
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return _SIGNATURE_TAG + packed


def make_blob(value: bytes, publisher: bytes, ttl: int = MAX_TTL) -> ValueRecord:
    return ValueRecord(blob_key(value), "blob", value, publisher, ttl=ttl)


def make_signed(
    signer: nacl.signing.SigningKey, name: bytes, value: bytes, seq: int, ttl: int = MAX_TTL
) -> ValueRecord:
    publisher = bytes(signer.verify_key)
    unsigned = ValueRecord(signed_key(publisher, name), "signed", value, publisher, name, seq, ttl)
    signature = signer.sign(unsigned.signed_bytes()).signature
    return ValueRecord(unsigned.key, "signed", value, publisher, name, seq, ttl, signature)


class Validator(Protocol):
    def validate(self, record: ValueRecord) -> None: ...

    def select(self, current: ValueRecord, incoming: ValueRecord) -> ValueRecord: ...


class BlobValidator:
    def validate(self, record: ValueRecord) -> None:
        if record.key != blob_key(record.value):
            raise InvalidRecord("blob key is not the hash of its value")

    def select(self, current: ValueRecord, incoming: ValueRecord) -> ValueRecord:
        return current  # identical by construction


class SignedValidator:
    def validate(self, record: ValueRecord) -> None:
        if len(record.name) > MAX_NAME_SIZE:
            raise InvalidRecord("signed record name too long")
        if record.key != signed_key(record.publisher, record.name):
            raise InvalidRecord("signed record key does not match publisher and name")
        try:
            nacl.signing.VerifyKey(record.publisher).verify(record.signed_bytes(), record.signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise InvalidRecord("signed record signature is invalid") from None

    def select(self, current: ValueRecord, incoming: ValueRecord) -> ValueRecord:
        return max(current, incoming, key=lambda r: (r.seq, r.value))


VALIDATORS: dict[str, Validator] = {"blob": BlobValidator(), "signed": SignedValidator()}


def validate(record: ValueRecord) -> Validator:
    """Check a record's shape and its kind's rules; returns its validator."""
    if len(record.key) != NODE_ID_SIZE:
        raise InvalidRecord(f"record key must be {NODE_ID_SIZE} bytes")
    if len(record.publisher) != PUBLIC_KEY_SIZE:
        raise InvalidRecord("record publisher must be a 32-byte public key")
    if len(record.value) > MAX_VALUE_SIZE:
        raise InvalidRecord(f"record value over {MAX_VALUE_SIZE} bytes")
    if not 0 < record.ttl <= MAX_TTL or record.seq < 0:
        raise InvalidRecord("record ttl or seq out of range")
    validator = VALIDATORS.get(record.kind)
    if validator is None:
        raise InvalidRecord(f"unknown record kind {record.kind!r}")
    validator.validate(record)
    return validator


@dataclass
class _Stored:
    record: ValueRecord
    expires_at: float


@dataclass
class StoreLimits:
    max_values: int = 100_000
    max_provider_keys: int = 100_000
    max_providers_per_key: int = 64


@dataclass
class RecordStore:
    """Values and provider records one node holds, expiring by `now`."""

    limits: StoreLimits = field(default_factory=StoreLimits)
    _values: dict[bytes, _Stored] = field(default_factory=dict)
    _providers: dict[bytes, dict[bytes, tuple[ContactInfo, float]]] = field(default_factory=dict)

    NO_ROOM: ClassVar[str] = "store full"

    def put(self, record: ValueRecord, now: float) -> bool:
        """Keep `record` (or the better of it and what is held); False if unchanged."""
        validator = validate(record)
        expires = now + min(record.ttl, MAX_TTL)
        held = self._values.get(record.key)
        if held is not None and held.expires_at > now:
            if held.record.kind != record.kind:
                raise InvalidRecord("a record of another kind holds this key")
            chosen = validator.select(held.record, record)
            if chosen is held.record:
                if chosen == record:
                    held.expires_at = max(held.expires_at, expires)  # republished
                return False
        elif len(self._values) >= self.limits.max_values:
            raise InvalidRecord(self.NO_ROOM)
        self._values[record.key] = _Stored(record, expires)
        return True

    def get(self, key: bytes, now: float) -> ValueRecord | None:
        held = self._values.get(key)
        if held is None or held.expires_at <= now:
            return None
        return held.record

    def add_provider(self, key: bytes, provider: ContactInfo, ttl: int, now: float) -> None:
        if len(key) != NODE_ID_SIZE:
            raise InvalidRecord(f"provider key must be {NODE_ID_SIZE} bytes")
        if not 0 < ttl <= MAX_TTL:
            raise InvalidRecord("provider ttl out of range")
        providers = self._providers.get(key)
        if providers is None:
            if len(self._providers) >= self.limits.max_provider_keys:
                raise InvalidRecord(self.NO_ROOM)
            providers = self._providers[key] = {}
        if (
            provider.public_key not in providers
            and len(providers) >= self.limits.max_providers_per_key
        ):
            raise InvalidRecord(self.NO_ROOM)
        providers[provider.public_key] = (provider, now + ttl)

    def providers(self, key: bytes, now: float, limit: int = 20) -> list[ContactInfo]:
        entries = self._providers.get(key, {})
        live = [(info, expires) for info, expires in entries.values() if expires > now]
        live.sort(key=lambda item: -item[1])  # freshest first
        return [info for info, _ in live[:limit]]

    def expire(self, now: float) -> int:
        """Forget everything past its TTL; returns how many entries went."""
        gone = [key for key, held in self._values.items() if held.expires_at <= now]
        for key in gone:
            del self._values[key]
        removed = len(gone)
        for key in list(self._providers):
            entries = self._providers[key]
            for public_key in [p for p, (_, exp) in entries.items() if exp <= now]:
                del entries[public_key]
                removed += 1
            if not entries:
                del self._providers[key]
        return removed

    def value_keys(self) -> Iterator[bytes]:
        return iter(list(self._values))

    def provider_keys(self) -> Iterator[bytes]:
        return iter(list(self._providers))

    def stats(self) -> dict[str, int]:
        return {
            "values": len(self._values),
            "provider_keys": len(self._providers),
            "providers": sum(len(p) for p in self._providers.values()),
        }
