"""DHT records: values with per-kind validators, signed provider records.

A value record names its validator (`kind`):
- "blob": immutable, content-addressed: the key is the tagged BLAKE2b-160 of
  the value, so any copy that validates is the same;
- "signed": mutable, owned: the key is the tagged BLAKE2b-160 of publisher
  key and name, the publisher signs every version, and the newest valid
  version (highest seq, then value bytes, then expiry) wins wherever it lands.

A provider record says "this node holds data for key K", signed by that
node: only a node itself can announce itself, yet any holder can hand the
announcement on to newly closer nodes.

Expiry is absolute (`expires_at`, seconds on the network's wall clock, signed
where there is a signature), so copies handed on never outlive what the
publisher asked for; the store also caps it at MAX_TTL from `now` and
refuses more than its limits so one peer cannot fill it. (An unsigned blob's
expiry could be prolonged by a holder; blobs are immutable, so that only
keeps valid data around longer.)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import msgpack
import nacl.exceptions
import nacl.signing

from protocol.dht.contact import ContactInfo
from protocol.ids import NODE_ID_SIZE, PUBLIC_KEY_SIZE

MAX_VALUE_SIZE = 64 * 1024
MAX_NAME_SIZE = 256
MAX_TTL = 7 * 24 * 3600
_BLOB_TAG = b"medvault/dht-blob/v1"
_SIGNED_TAG = b"medvault/dht-signed/v1"
_SIGNATURE_TAG = b"medvault/dht-record-signature/v1"
_PROVIDER_TAG = b"medvault/dht-provider-signature/v1"


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


def _pack(fields: list[object]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


@dataclass(frozen=True)
class ValueRecord:
    key: bytes
    kind: str
    value: bytes
    publisher: bytes
    name: bytes
    seq: int
    expires_at: int
    signature: bytes

    def signed_bytes(self) -> bytes:
        return _SIGNATURE_TAG + _pack(
            [self.key, self.kind, self.value, self.publisher, self.name, self.seq, self.expires_at]
        )


def make_blob(value: bytes, publisher: bytes, expires_at: int) -> ValueRecord:
    return ValueRecord(blob_key(value), "blob", value, publisher, b"", 0, expires_at, b"")


def make_signed(
    signer: nacl.signing.SigningKey, name: bytes, value: bytes, seq: int, expires_at: int
) -> ValueRecord:
    publisher = bytes(signer.verify_key)
    key = signed_key(publisher, name)
    unsigned = ValueRecord(key, "signed", value, publisher, name, seq, expires_at, b"")
    signature = signer.sign(unsigned.signed_bytes()).signature
    return ValueRecord(key, "signed", value, publisher, name, seq, expires_at, signature)


@dataclass(frozen=True)
class ProviderRecord:
    """`provider` holds data for `key`, signed by the provider itself."""

    key: bytes
    provider: ContactInfo
    expires_at: int
    signature: bytes

    def signed_bytes(self) -> bytes:
        return _PROVIDER_TAG + _pack(
            [self.key, self.provider.public_key, self.provider.address, self.expires_at]
        )


def make_provider(
    signer: nacl.signing.SigningKey, key: bytes, address: str, expires_at: int
) -> ProviderRecord:
    info = ContactInfo(bytes(signer.verify_key), address)
    unsigned = ProviderRecord(key, info, expires_at, b"")
    return ProviderRecord(key, info, expires_at, signer.sign(unsigned.signed_bytes()).signature)


def validate_provider(record: ProviderRecord, now: float) -> None:
    if len(record.key) != NODE_ID_SIZE:
        raise InvalidRecord(f"provider key must be {NODE_ID_SIZE} bytes")
    if record.expires_at <= now:
        raise InvalidRecord("provider record has expired")
    try:
        nacl.signing.VerifyKey(record.provider.public_key).verify(
            record.signed_bytes(), record.signature
        )
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise InvalidRecord("provider record is not signed by the provider") from None


class Validator(Protocol):
    def validate(self, record: ValueRecord) -> None: ...

    def select(self, current: ValueRecord, incoming: ValueRecord) -> ValueRecord: ...


class BlobValidator:
    def validate(self, record: ValueRecord) -> None:
        if record.key != blob_key(record.value):
            raise InvalidRecord("blob key is not the hash of its value")

    def select(self, current: ValueRecord, incoming: ValueRecord) -> ValueRecord:
        return max(current, incoming, key=lambda r: r.expires_at)  # same value by construction


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
        return max(current, incoming, key=lambda r: (r.seq, r.value, r.expires_at))


VALIDATORS: dict[str, Validator] = {"blob": BlobValidator(), "signed": SignedValidator()}


def validate(record: ValueRecord, now: float) -> Validator:
    """Check a record's shape and its kind's rules; returns its validator."""
    if len(record.key) != NODE_ID_SIZE:
        raise InvalidRecord(f"record key must be {NODE_ID_SIZE} bytes")
    if len(record.publisher) != PUBLIC_KEY_SIZE:
        raise InvalidRecord("record publisher must be a 32-byte public key")
    if len(record.value) > MAX_VALUE_SIZE:
        raise InvalidRecord(f"record value over {MAX_VALUE_SIZE} bytes")
    if record.expires_at <= now:
        raise InvalidRecord("record has expired")
    if record.seq < 0:
        raise InvalidRecord("record seq is negative")
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
    # Keys one provider may hold here: a member announcing junk keys fills at most
    # a quarter of the store, and honest nodes' announcements still fit.
    max_keys_per_provider: int = 25_000


@dataclass
class RecordStore:
    """Values and provider records one node holds, expiring by `now`."""

    limits: StoreLimits = field(default_factory=StoreLimits)
    _values: dict[bytes, _Stored] = field(default_factory=dict)
    _providers: dict[bytes, dict[bytes, ProviderRecord]] = field(default_factory=dict)
    _keys_of: Counter[bytes] = field(default_factory=Counter)  # provider -> keys held

    NO_ROOM: ClassVar[str] = "store full"
    PROVIDER_FULL: ClassVar[str] = "this provider holds its share of keys here already"

    def put(self, record: ValueRecord, now: float) -> bool:
        """Keep `record` (or the better of it and what is held); False if unchanged."""
        validator = validate(record, now)
        held = self._values.get(record.key)
        if held is not None and held.expires_at > now:
            if held.record.kind != record.kind:
                raise InvalidRecord("a record of another kind holds this key")
            if validator.select(held.record, record) is held.record:
                return False
        elif held is None and len(self._values) >= self.limits.max_values:
            raise InvalidRecord(self.NO_ROOM)
        self._values[record.key] = _Stored(record, min(record.expires_at, now + MAX_TTL))
        return True

    def get(self, key: bytes, now: float) -> ValueRecord | None:
        held = self._values.get(key)
        if held is None or held.expires_at <= now:
            return None
        return held.record

    def add_provider(self, record: ProviderRecord, now: float) -> bool:
        """Keep a validated provider record; False when an equal or newer one is held."""
        validate_provider(record, now)
        providers = self._providers.get(record.key)
        if providers is None:
            if len(self._providers) >= self.limits.max_provider_keys:
                raise InvalidRecord(self.NO_ROOM)
            providers = self._providers[record.key] = {}
        public_key = record.provider.public_key
        held = providers.get(public_key)
        if held is None and len(providers) >= self.limits.max_providers_per_key:
            raise InvalidRecord(self.NO_ROOM)
        if held is None and self._keys_of[public_key] >= self.limits.max_keys_per_provider:
            if not providers:
                del self._providers[record.key]
            raise InvalidRecord(self.PROVIDER_FULL)
        if held is not None and held.expires_at >= record.expires_at:
            return False
        providers[public_key] = record
        if held is None:
            self._keys_of[public_key] += 1
        return True

    def providers(self, key: bytes, now: float, limit: int = 20) -> list[ProviderRecord]:
        """Live provider records for `key`, the longest-lived first."""
        live = [r for r in self._providers.get(key, {}).values() if r.expires_at > now]
        live.sort(key=lambda r: (-r.expires_at, r.provider.public_key))
        return live[:limit]

    def expire(self, now: float) -> int:
        """Forget everything past its expiry; returns how many entries went."""
        gone = [key for key, held in self._values.items() if held.expires_at <= now]
        for key in gone:
            del self._values[key]
        removed = len(gone)
        for key in list(self._providers):
            entries = self._providers[key]
            for public_key in [p for p, r in entries.items() if r.expires_at <= now]:
                del entries[public_key]
                self._keys_of[public_key] -= 1
                if not self._keys_of[public_key]:
                    del self._keys_of[public_key]
                removed += 1
            if not entries:
                del self._providers[key]
        return removed

    def drop_provider(self, public_key: bytes) -> int:
        """Forget every provider record of `public_key` (a revoked node); how many went."""
        removed = 0
        for key in list(self._providers):
            entries = self._providers[key]
            if entries.pop(public_key, None) is not None:
                removed += 1
                if not entries:
                    del self._providers[key]
        self._keys_of.pop(public_key, None)
        return removed

    def value_records(self, now: float) -> list[ValueRecord]:
        return [h.record for h in self._values.values() if h.expires_at > now]

    def provider_records(self, now: float) -> list[ProviderRecord]:
        return [
            r
            for entries in self._providers.values()
            for r in entries.values()
            if r.expires_at > now
        ]

    def stats(self) -> dict[str, int]:
        return {
            "values": len(self._values),
            "provider_keys": len(self._providers),
            "providers": sum(len(p) for p in self._providers.values()),
        }
