from __future__ import annotations

import nacl.bindings
import pytest

from storage.codec import hashing


def test_tagged_hash_is_libsodium_keyed_blake2b() -> None:
    data = b"shard block bytes" * 100
    expected = nacl.bindings.crypto_generichash_blake2b_salt_personal(
        data, digest_size=32, key=hashing.SHARD_TAG
    )
    assert hashing.shard_hash(data) == expected
    assert hashing.tagged_hash(hashing.SHARD_TAG, data[:5], data[5:]) == expected


def test_domains_are_separated() -> None:
    data = b"same bytes"
    assert hashing.shard_hash(data) != hashing.manifest_hash(data)
    assert hashing.tagged_hash(b"a", data) != hashing.tagged_hash(b"b", data)


def test_hash_accepts_views_without_copying_semantics_changing() -> None:
    data = bytearray(b"0123456789" * 50)
    assert hashing.shard_hash(memoryview(data)[10:]) == hashing.shard_hash(bytes(data[10:]))


def test_record_id_binds_owner_and_nonce() -> None:
    owner_a, owner_b = b"a" * 32, b"b" * 32
    nonce = b"n" * 16
    assert hashing.derive_record_id(owner_a, nonce) != hashing.derive_record_id(owner_b, nonce)
    assert hashing.derive_record_id(owner_a, nonce) != hashing.derive_record_id(owner_a, b"m" * 16)
    assert len(hashing.derive_record_id(owner_a, nonce)) == 32


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="owner public key"):
        hashing.derive_record_id(b"short", b"n" * 16)
    with pytest.raises(ValueError, match="nonce"):
        hashing.derive_record_id(b"a" * 32, b"short")
    with pytest.raises(ValueError, match="tag"):
        hashing.tagged_hash(b"", b"x")
