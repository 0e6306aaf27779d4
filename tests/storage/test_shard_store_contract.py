"""One contract, every backend: what any ShardStore must do (blocks named by BLAKE3,
what version 3 manifests list; tests/storage/test_block_hashes.py covers BLAKE2b)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from storage.codec.hashing import shard_hash_v3
from storage.errors import BlockMismatch, CorruptShard, ShardNotFound, StoreFull
from tests.storage.store_fixtures import Backend, disk_backend, memory_backend


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return memory_backend() if request.param == "memory" else disk_backend(tmp_path / "store")


def block(size: int = 1000, seed: int = 0) -> tuple[bytes, bytes]:
    data = (seed.to_bytes(4, "big") + os.urandom(size))[:size]
    return shard_hash_v3(data), data


def test_put_get_list_delete(backend: Backend) -> None:
    store = backend.make(None)
    items = [block(100 * (i + 1), i) for i in range(5)]
    for digest, data in items:
        assert store.put(digest, data) is True
    for digest, data in items:
        assert digest in store
        assert store.get(digest) == data
    assert store.digests() == sorted(d for d, _ in items)
    assert store.used_bytes == sum(len(d) for _, d in items)
    first = items[0][0]
    assert store.delete(first) is True
    assert store.delete(first) is False
    assert first not in store
    with pytest.raises(ShardNotFound, match=first.hex()):
        store.get(first)
    assert store.used_bytes == sum(len(d) for _, d in items[1:])


def test_accepts_views(backend: Backend) -> None:
    store = backend.make(None)
    digest, data = block()
    assert store.put(digest, memoryview(bytearray(data)))
    assert store.get(digest) == data


def test_duplicate_put_is_idempotent(backend: Backend) -> None:
    store = backend.make(None)
    digest, data = block()
    assert store.put(digest, data) is True
    assert store.put(digest, data) is False
    assert store.used_bytes == len(data)
    assert store.digests() == [digest]


def test_block_that_does_not_match_its_name_is_refused(backend: Backend) -> None:
    store = backend.make(None)
    digest, _ = block(seed=1)
    _, other = block(seed=2)
    with pytest.raises(BlockMismatch, match="refused"):
        store.put(digest, other)
    assert digest not in store
    assert store.used_bytes == 0


def test_quota_refuses_without_storing(backend: Backend) -> None:
    store = backend.make(2500)
    a, b, c = block(1000, 1), block(1000, 2), block(1000, 3)
    store.put(*a)
    store.put(*b)
    with pytest.raises(StoreFull, match="2000 of 2500 bytes used, a 1000-byte block"):
        store.put(*c)
    assert c[0] not in store
    assert store.used_bytes == 2000
    store.delete(a[0])
    assert store.put(*c) is True


def test_corrupt_block_is_quarantined_and_never_served(backend: Backend) -> None:
    store = backend.make(None)
    digest, data = block(500)
    store.put(digest, data)
    backend.damage(store, digest, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptShard, match=digest.hex()):
        store.get(digest)
    assert digest not in store
    assert store.digests() == []
    assert store.quarantined() == [digest]
    assert store.used_bytes == 0
    with pytest.raises(ShardNotFound):
        store.get(digest)
    # A good copy can be stored again (repair).
    assert store.put(digest, data) is True
    assert store.get(digest) == data


def test_scrub_finds_every_corrupt_block(backend: Backend) -> None:
    store = backend.make(None)
    items = [block(300, i) for i in range(6)]
    for digest, data in items:
        store.put(digest, data)
    rotten = sorted([items[1][0], items[4][0]])
    for digest in rotten:
        backend.damage(store, digest, b"garbage")
    assert store.scrub() == rotten
    assert store.quarantined() == rotten
    assert store.scrub() == []
    assert len(store.digests()) == 4


def test_bad_digests_and_capacity(backend: Backend) -> None:
    store = backend.make(None)
    with pytest.raises(ValueError, match="32 bytes"):
        store.get(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        store.put(b"short", b"data")
    assert b"short" not in store
    assert "text" not in store
    with pytest.raises(ValueError, match="capacity"):
        backend.make(-1)


def test_concurrent_writers_account_exactly(backend: Backend) -> None:
    store = backend.make(None)
    items = [block(2000, i) for i in range(40)]

    def writer(offset: int) -> None:
        for i in range(offset, len(items) + offset):
            store.put(*items[i % len(items)])  # every writer writes every block

    threads = [threading.Thread(target=writer, args=(i * 7,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.digests() == sorted(d for d, _ in items)
    assert store.used_bytes == 2000 * len(items)


def test_add_stores_under_the_blocks_own_hash(backend: Backend) -> None:
    store = backend.make(1500)
    digest, data = block(1000, 7)
    assert store.add(memoryview(data)) == digest
    assert store.get(digest) == data and store.used_bytes == 1000
    assert store.add(data) == digest and store.used_bytes == 1000  # idempotent
    with pytest.raises(StoreFull):
        store.add(block(1000, 8)[1])
    assert store.used_bytes == 1000


def test_delete_many_removes_each_once_and_counts_what_was_there(backend: Backend) -> None:
    store = backend.make(None)
    items = [block(400, i) for i in range(5)]
    for digest, data in items:
        store.put(digest, data)
    gone = [items[0][0], items[3][0], items[0][0], block(400, 99)[0]]
    assert store.delete_many(gone) == 2
    assert store.digests() == sorted(d for d, _ in (items[1], items[2], items[4]))
    assert store.used_bytes == 3 * 400
    assert store.delete_many([]) == 0
