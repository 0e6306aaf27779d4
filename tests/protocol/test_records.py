from __future__ import annotations

import pytest

from protocol.contact import ContactInfo
from protocol.records import (
    MAX_VALUE_SIZE,
    InvalidRecord,
    RecordStore,
    StoreLimits,
    ValueRecord,
    make_blob,
    make_signed,
    validate,
)
from tests.protocol.keys import signing_key

ALICE = signing_key("alice")
MALLORY = signing_key("mallory")
PUB = bytes(ALICE.verify_key)


def test_blob_is_content_addressed() -> None:
    record = make_blob(b"manifest bytes", PUB, ttl=60)
    validate(record)
    forged = ValueRecord(record.key, "blob", b"other bytes", PUB, ttl=60)
    with pytest.raises(InvalidRecord, match="hash of its value"):
        validate(forged)


def test_signed_records_keep_the_newest_valid_version() -> None:
    store = RecordStore()
    v1 = make_signed(ALICE, b"node-info", b"one", seq=1, ttl=100)
    v2 = make_signed(ALICE, b"node-info", b"two", seq=2, ttl=100)
    assert store.put(v2, now=0)
    assert not store.put(v1, now=1)  # older: ignored
    assert store.get(v1.key, now=2) == v2
    # A newer seq signed by someone else cannot take over the key.
    stolen = make_signed(MALLORY, b"node-info", b"evil", seq=9)
    hijack = ValueRecord(v1.key, "signed", b"evil", PUB, b"node-info", 9, 100, stolen.signature)
    with pytest.raises(InvalidRecord, match="signature"):
        store.put(hijack, now=3)
    assert store.get(v1.key, now=3) == v2


def test_record_shape_checks() -> None:
    good = make_blob(b"x", PUB)
    for bad, message in [
        (ValueRecord(b"short", "blob", b"x", PUB), "key must be"),
        (ValueRecord(good.key, "blob", b"x", b"pk"), "publisher"),
        (ValueRecord(good.key, "blob", b"x", PUB, ttl=0), "ttl"),
        (ValueRecord(good.key, "nope", b"x", PUB), "unknown record kind"),
        (make_blob(b"y" * (MAX_VALUE_SIZE + 1), PUB), "over"),
    ]:
        with pytest.raises(InvalidRecord, match=message):
            validate(bad)


def test_values_expire_and_republish_extends() -> None:
    store = RecordStore()
    record = make_blob(b"v", PUB, ttl=10)
    assert store.put(record, now=0)
    assert store.get(record.key, now=9) == record
    assert not store.put(record, now=5)  # republished: same record, later expiry
    assert store.get(record.key, now=14) == record
    assert store.get(record.key, now=15) is None
    assert store.expire(now=15) == 1 and store.stats()["values"] == 0


def test_providers_expire_and_are_bounded() -> None:
    store = RecordStore(StoreLimits(max_provider_keys=1, max_providers_per_key=2))
    key = b"k" * 20
    a, b, c = (ContactInfo(bytes([i]) * 32, f"h:{i}") for i in (1, 2, 3))
    store.add_provider(key, a, ttl=10, now=0)
    store.add_provider(key, b, ttl=20, now=0)
    assert store.providers(key, now=5) == [b, a]
    with pytest.raises(InvalidRecord, match="full"):
        store.add_provider(key, c, ttl=10, now=0)
    store.add_provider(key, a, ttl=10, now=5)  # refresh of a known provider is fine
    with pytest.raises(InvalidRecord, match="full"):
        store.add_provider(b"z" * 20, a, ttl=10, now=0)
    assert store.providers(key, now=16) == [b]
    assert store.expire(now=21) == 2 and store.stats()["provider_keys"] == 0


def test_store_value_limits() -> None:
    store = RecordStore(StoreLimits(max_values=1))
    store.put(make_blob(b"a", PUB), now=0)
    with pytest.raises(InvalidRecord, match="full"):
        store.put(make_blob(b"b", PUB), now=0)
