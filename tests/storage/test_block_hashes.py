"""Manifest version 3's BLAKE3 block and manifest hashes beside versions 1 and 2's BLAKE2b.

Holders check a block against its digest without the manifest, under either
algorithm; readers check blocks and manifests by the manifest's own version only,
so neither algorithm's digest stands in for the other's. A record stored before
version 3 (tests/storage/fixtures/v2_record.json, written by the code of that time)
still verifies and reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from storage.codec import hashing
from storage.codec.decoder import RecordDecoder
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import (
    BLAKE3_VERSION,
    LEGACY_VERSION,
    MANIFEST_VERSION,
    PADDED_VERSION,
    Manifest,
    RecordMetadata,
    shard_hasher,
)
from storage.errors import BlockMismatch, CorruptShard, ManifestError, NotEnoughShards
from storage.store.disk import DiskShardStore
from storage.store.shard_store import store_source
from tests.storage.store_fixtures import Backend, disk_backend, memory_backend

FIXTURE = Path(__file__).parent / "fixtures" / "v2_record.json"
KEY = b"K" * 32
RID = b"R" * 32
BOTH = pytest.mark.parametrize(
    "hasher", [hashing.shard_hash_v3, hashing.shard_hash], ids=["blake3", "blake2b"]
)


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return memory_backend() if request.param == "memory" else disk_backend(tmp_path / "store")


# -- the functions --------------------------------------------------------------------


def test_derive_key_mode_matches_the_published_blake3_vector() -> None:
    """BLAKE3's official test vectors, input length 0: plain hash and derive_key."""
    context = "BLAKE3 2019-12-27 16:29:52 test vectors context"
    assert blake3(b"").hexdigest().startswith("af1349b9f5f9a1a6a0404dea36dcc949")
    assert blake3(b"", derive_key_context=context).hexdigest() == (
        "2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d"
    )


def test_the_version_3_contexts_never_change() -> None:
    """Pinned: stored blocks and ledger entries are named by these digests."""
    assert hashing.SHARD_CONTEXT_V3 == "medvault 2026 shard v3"
    assert hashing.MANIFEST_CONTEXT_V3 == "medvault 2026 manifest v3"
    assert hashing.shard_hash_v3(b"").hex() == (
        "b9fee26e7151e605376c698e987d2711feb050b62ff12e27b9763be6fa0c179d"
    )
    assert hashing.manifest_hash_v3(b"").hex() == (
        "d1e8049a387d72bd620dc5914f973d2d4f40471087b52fb327dbf230149a50cc"
    )


def test_every_kind_and_algorithm_hashes_differently() -> None:
    data = os.urandom(5000)
    digests = {
        hashing.shard_hash(data),
        hashing.shard_hash_v3(data),
        hashing.manifest_hash(data),
        hashing.manifest_hash_v3(data),
        blake3(data).digest(),
    }
    assert len(digests) == 5


def test_views_hash_like_bytes_and_threads_do_not_change_the_digest() -> None:
    data = bytearray(os.urandom(3 * 1024 * 1024))
    view = memoryview(data)[7:]
    assert hashing.shard_hash_v3(view) == hashing.shard_hash_v3(bytes(view))
    context = hashing.SHARD_CONTEXT_V3
    threaded = blake3(view, derive_key_context=context, max_threads=blake3.AUTO).digest()
    assert threaded == hashing.shard_hash_v3(view)


@BOTH
def test_a_block_matches_its_digest_under_either_algorithm(hasher: hashing.Hasher) -> None:
    block = os.urandom(1000)
    assert hashing.block_matches(hasher(block), block)
    assert not hashing.block_matches(hasher(block), block[:-1] + bytes([block[-1] ^ 1]))
    assert not hashing.block_matches(hasher(os.urandom(1000)), block)


# -- holders: store, serve, scrub ------------------------------------------------------


@BOTH
def test_holders_store_serve_and_scrub_blocks_of_either_algorithm(
    backend: Backend, hasher: hashing.Hasher
) -> None:
    store = backend.make(None)
    blocks = [os.urandom(700 + i) for i in range(4)]
    digests = [hasher(b) for b in blocks]
    for digest, block in zip(digests, blocks, strict=True):
        assert store.put(digest, memoryview(block)) is True
    assert [store.get(d) for d in digests] == blocks  # served, verified
    assert store.scrub() == []
    backend.damage(store, digests[1], b"\x00" * 700)
    assert store.scrub() == [digests[1]]
    assert store.quarantined() == [digests[1]]
    backend.damage(store, digests[2], blocks[2][:-1] + b"\x00")  # a read finds it
    with pytest.raises(CorruptShard):
        store.get(digests[2])
    assert store.quarantined() == sorted(digests[1:3])
    assert store.get(digests[0]) == blocks[0]


def test_a_block_added_before_its_manifest_is_named_by_blake3(backend: Backend) -> None:
    store = backend.make(None)
    block = os.urandom(1000)
    assert store.add(block) == hashing.shard_hash_v3(block)
    assert hashing.shard_hash(block) not in store


@BOTH
def test_a_member_cannot_store_a_block_under_a_name_it_does_not_have(
    backend: Backend, hasher: hashing.Hasher
) -> None:
    """Neither algorithm's digest of another block, nor a forged (one bit) block under
    either algorithm's digest of the real one, is accepted; nothing is kept."""
    store = backend.make(None)
    real, other = os.urandom(1000), os.urandom(1000)
    forged = bytes([real[0] ^ 0x80]) + real[1:]
    attempts = [
        (hasher(other), real),
        (hasher(real), forged),
        (hashing.shard_hash_v3(real), forged),
        (hashing.shard_hash(real), forged),
        # right bytes, the digest the other algorithm would give a different block
        (
            hashing.shard_hash(other)
            if hasher is hashing.shard_hash_v3
            else hashing.shard_hash_v3(other),
            real,
        ),
    ]
    for digest, block in attempts:
        with pytest.raises(BlockMismatch):
            store.put(digest, block)
    assert store.digests() == [] and store.used_bytes == 0


# -- readers: a manifest's version decides ----------------------------------------------


def encode(data: bytes, version: int = MANIFEST_VERSION) -> tuple[Manifest, dict[Any, bytes]]:
    encoder = RecordEncoder(
        record_id=RID, record_key=KEY, k=2, n=4, segment_size=512, version=version
    )
    blocks = {}
    for segment in encoder.encode(io.BytesIO(data)):
        for index, block in enumerate(segment.blocks):
            blocks[segment.index, index] = bytes(block)
    return encoder.manifest(), blocks


@pytest.mark.parametrize("version", [LEGACY_VERSION, PADDED_VERSION, BLAKE3_VERSION])
def test_each_version_lists_its_own_block_hash(version: int) -> None:
    data = os.urandom(2000)
    manifest, blocks = encode(data, version)
    hasher = hashing.shard_hash_v3 if version == BLAKE3_VERSION else hashing.shard_hash
    assert manifest.shard_hasher is hasher is shard_hasher(version)
    for (segment, index), block in blocks.items():
        assert manifest.block_hash(segment, index) == hasher(block)
        assert manifest.verify_block(segment, index, block)
    out = io.BytesIO()
    RecordDecoder(manifest, KEY).decode_to(out, lambda s, i: blocks.get((s, i)))
    assert out.getvalue() == data


def test_a_reader_takes_only_the_manifest_versions_algorithm() -> None:
    """Blocks listed by the other algorithm's digest do not verify, so a relabelled
    manifest does not decode (the holders would still store them: they cannot tell)."""
    data = os.urandom(2000)
    manifest, blocks = encode(data, BLAKE3_VERSION)
    relabelled = dataclasses.replace(manifest, version=PADDED_VERSION)
    assert not any(relabelled.verify_block(s, i, b) for (s, i), b in blocks.items())
    with pytest.raises(NotEnoughShards):
        RecordDecoder(relabelled, KEY).decode_segment(0, lambda s, i: blocks.get((s, i)))


def test_a_manifest_is_checked_by_the_hash_of_its_own_version() -> None:
    manifest, _ = encode(os.urandom(2000), BLAKE3_VERSION)
    raw = manifest.encode()
    assert manifest.digest() == hashing.manifest_hash_v3(raw)
    assert Manifest.decode_checked(raw, manifest.digest()) == manifest
    as_v2 = dataclasses.replace(manifest, version=PADDED_VERSION)
    assert as_v2.digest() == hashing.manifest_hash(as_v2.encode())
    # A version 2 manifest cannot stand in for a version 3 id, nor the reverse ...
    with pytest.raises(ManifestError, match="does not hash"):
        Manifest.decode_checked(as_v2.encode(), manifest.digest())
    with pytest.raises(ManifestError, match="does not hash"):
        Manifest.decode_checked(raw, as_v2.digest())
    # ... and the bytes of one version are not accepted under the other's algorithm.
    with pytest.raises(ManifestError, match="does not hash"):
        Manifest.decode_checked(raw, hashing.manifest_hash(raw))
    assert Manifest.decode(raw).digest() != hashing.manifest_hash(raw)


# -- the record stored before version 3 ---------------------------------------------------


def test_a_stored_version_2_manifest_and_record_still_verify_and_read(tmp_path: Path) -> None:
    fixture = json.loads(FIXTURE.read_text())
    raw = bytes.fromhex(fixture["manifest"])
    manifest = Manifest.decode_checked(raw, bytes.fromhex(fixture["manifest_hash"]))
    assert (
        manifest.version == PADDED_VERSION and manifest.digest().hex() == (fixture["manifest_hash"])
    )
    store = DiskShardStore(tmp_path / "holder")
    for name, block in fixture["blocks"].items():
        assert store.put(bytes.fromhex(name), bytes.fromhex(block))  # BLAKE2b names
    assert store.scrub() == []
    for segment in range(manifest.segment_count):
        for index in range(manifest.n):
            block = store.get(manifest.block_hash(segment, index))
            assert manifest.verify_block(segment, index, block)
    key = bytes.fromhex(fixture["record_key"])
    decoder = RecordDecoder(manifest, key)
    out = io.BytesIO()
    decoder.decode_to(out, store_source(store, manifest))
    data = hashlib.shake_256(b"medvault version 2 fixture").digest(3000)
    assert out.getvalue() == data
    assert hashlib.sha256(data).hexdigest() == fixture["plaintext_sha256"]
    assert decoder.metadata() == RecordMetadata("text/plain", "v2-fixture.txt", "P-2", {})
