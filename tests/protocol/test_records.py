from __future__ import annotations

import dataclasses

import pytest

from protocol.dht.contact import ContactInfo
from protocol.dht.store import (
    MAX_TTL,
    MAX_VALUE_SIZE,
    InvalidRecord,
    RecordStore,
    StoreLimits,
    ValueRecord,
    make_blob,
    make_provider,
    make_signed,
    validate,
)
from tests.protocol.keys import signing_key

ALICE = signing_key("alice")
MALLORY = signing_key("mallory")
PUB = bytes(ALICE.verify_key)
KEY = b"k" * 20


def test_blob_is_content_addressed() -> None:
    record = make_blob(b"manifest bytes", PUB, expires_at=60)
    validate(record, now=0)
    forged = dataclasses.replace(record, value=b"other bytes")
    with pytest.raises(InvalidRecord, match="hash of its value"):
        validate(forged, now=0)


def test_signed_records_keep_the_newest_valid_version() -> None:
    store = RecordStore()
    v1 = make_signed(ALICE, b"node-info", b"one", seq=1, expires_at=100)
    v2 = make_signed(ALICE, b"node-info", b"two", seq=2, expires_at=100)
    assert store.put(v2, now=0)
    assert not store.put(v1, now=1)  # older: ignored
    assert store.get(v1.key, now=2) == v2
    # A newer seq signed by someone else cannot take over the key.
    stolen = make_signed(MALLORY, b"node-info", b"evil", seq=9, expires_at=100)
    hijack = dataclasses.replace(v2, value=b"evil", seq=9, signature=stolen.signature)
    with pytest.raises(InvalidRecord, match="signature"):
        store.put(hijack, now=3)
    # Nor can the expiry be stretched without re-signing.
    with pytest.raises(InvalidRecord, match="signature"):
        store.put(dataclasses.replace(v2, expires_at=10**9), now=3)
    assert store.get(v1.key, now=3) == v2


def test_republish_with_a_later_expiry_replaces() -> None:
    store = RecordStore()
    first = make_signed(ALICE, b"n", b"v", seq=1, expires_at=100)
    again = make_signed(ALICE, b"n", b"v", seq=1, expires_at=200)
    assert store.put(first, now=0) and store.put(again, now=50)
    assert store.get(first.key, now=150) == again


def test_record_shape_checks() -> None:
    good = make_blob(b"x", PUB, expires_at=100)
    for bad, message in [
        (dataclasses.replace(good, key=b"short"), "key must be"),
        (dataclasses.replace(good, publisher=b"pk"), "publisher"),
        (dataclasses.replace(good, expires_at=5), "expired"),
        (dataclasses.replace(good, kind="nope"), "unknown record kind"),
        (make_blob(b"y" * (MAX_VALUE_SIZE + 1), PUB, expires_at=100), "over"),
    ]:
        with pytest.raises(InvalidRecord, match=message):
            validate(bad, now=10)


def test_values_expire_at_their_time_and_ttl_is_capped() -> None:
    store = RecordStore()
    record = make_blob(b"v", PUB, expires_at=10)
    assert store.put(record, now=0)
    assert store.get(record.key, now=9) == record
    assert store.get(record.key, now=10) is None
    assert store.expire(now=10) == 1 and store.stats()["values"] == 0
    forever = make_blob(b"w", PUB, expires_at=10**12)
    store.put(forever, now=0)
    assert store.get(forever.key, now=MAX_TTL - 1) is not None
    assert store.get(forever.key, now=MAX_TTL) is None


def test_provider_records_must_be_signed_by_the_provider() -> None:
    store = RecordStore()
    own = make_provider(ALICE, KEY, "10.0.0.1:7420", expires_at=100)
    assert store.add_provider(own, now=0)
    assert store.providers(KEY, now=1) == [own]
    # Mallory claims Alice provides another key: the signature does not cover it.
    claimed = dataclasses.replace(own, key=b"z" * 20)
    with pytest.raises(InvalidRecord, match="not signed by the provider"):
        store.add_provider(claimed, now=0)
    # Or that Alice lives elsewhere.
    moved = dataclasses.replace(own, provider=ContactInfo(PUB, "6.6.6.6:1"))
    with pytest.raises(InvalidRecord, match="not signed"):
        store.add_provider(moved, now=0)
    with pytest.raises(InvalidRecord, match="expired"):
        store.add_provider(own, now=100)


def test_providers_expire_and_are_bounded() -> None:
    store = RecordStore(StoreLimits(max_provider_keys=1, max_providers_per_key=2))
    a = make_provider(signing_key("a"), KEY, "h:1", expires_at=10)
    b = make_provider(signing_key("b"), KEY, "h:2", expires_at=20)
    c = make_provider(signing_key("c"), KEY, "h:3", expires_at=10)
    store.add_provider(a, now=0)
    store.add_provider(b, now=0)
    assert store.providers(KEY, now=5) == [b, a]
    with pytest.raises(InvalidRecord, match="full"):
        store.add_provider(c, now=0)
    refreshed = make_provider(signing_key("a"), KEY, "h:1", expires_at=15)
    assert store.add_provider(refreshed, now=5)  # a known provider may refresh
    assert not store.add_provider(a, now=5)  # an older copy changes nothing
    with pytest.raises(InvalidRecord, match="full"):
        store.add_provider(make_provider(signing_key("a"), b"y" * 20, "h:1", 10), now=0)
    assert store.providers(KEY, now=16) == [b]
    assert store.expire(now=21) == 2 and store.stats()["provider_keys"] == 0


def test_store_value_limits() -> None:
    store = RecordStore(StoreLimits(max_values=1))
    store.put(make_blob(b"a", PUB, expires_at=10), now=0)
    with pytest.raises(InvalidRecord, match="full"):
        store.put(make_blob(b"b", PUB, expires_at=10), now=0)


def test_value_record_fields_are_all_on_the_wire() -> None:
    record = make_signed(ALICE, b"n", b"v", 3, 99)
    assert {f.name for f in dataclasses.fields(ValueRecord)} >= {"expires_at", "signature"}
    assert record.signature and len(record.signature) == 64


def test_one_provider_holds_at_most_its_share_of_keys() -> None:
    store = RecordStore(StoreLimits(max_provider_keys=10, max_keys_per_provider=3))
    flooder, honest = signing_key("flooder"), signing_key("honest")
    for i in range(3):
        store.add_provider(make_provider(flooder, bytes([i]) * 20, "h:1", 100), now=0)
    with pytest.raises(InvalidRecord, match="its share"):
        store.add_provider(make_provider(flooder, b"\x09" * 20, "h:1", 100), now=0)
    assert store.stats()["provider_keys"] == 3  # the refused key left nothing behind
    for i in range(3):  # others still have room, on the flooder's keys too
        store.add_provider(make_provider(honest, bytes([i]) * 20, "h:2", 100), now=0)
    refreshed = make_provider(flooder, b"\x00" * 20, "h:1", 200)
    assert store.add_provider(refreshed, now=0)  # refreshing a held key is no new key
    assert store.expire(now=150) == 5  # its old keys expire: room again
    store.add_provider(make_provider(flooder, b"\x09" * 20, "h:1", 300), now=150)
