"""The pack store under an operator's faults and a member's races (review of issue 17).

Each test is a fault found in review: a restored index, a full index, a damaged
index, a failed commit, racing batches that share a new block, a compaction of
a pack cut short or on a full disk, a forged trailer in a pack cut by a crash.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from storage.codec.hashing import shard_hash
from storage.errors import StoreFull
from storage.store.disk import DiskShardStore
from storage.store.packs import PackError
from tests.storage.crash_writer import make_block


def pack_files(root: Path) -> list[Path]:
    return sorted((root / "packs").rglob("*.pack"))


def blocks_of(seed: int, count: int, size: int) -> list[tuple[bytes, bytes]]:
    blocks = [make_block(seed, i)[:size] for i in range(count)]
    return [(shard_hash(b), b) for b in blocks]


def assert_sound(root: Path, live: dict[bytes, bytes]) -> DiskShardStore:
    """Reopened: exactly `live` is held and served, counted, and every pack file is indexed."""
    store = DiskShardStore(root)
    assert store.digests() == sorted(live)
    assert all(store.get(d) == b for d, b in live.items())
    assert store.used_bytes == sum(len(b) for b in live.values())
    assert {p.name for p in pack_files(root)} == {
        f"{pack:012x}.pack" for pack in store._index.packs()
    }
    return store


def test_a_full_index_raises_store_full_and_the_store_keeps_working(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    first = blocks_of(32, 1, 1000)
    store.put_many(first)
    with store._index._db.connection() as db:
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL at the next new page
    batch = blocks_of(33, 300, 500)
    with pytest.raises(StoreFull, match="disk full while indexing"):
        store.put_many(batch)
    assert store.used_bytes == 1000
    assert len(pack_files(tmp_path)) == 1
    with store._index._db.connection() as db:
        db.execute("PRAGMA max_page_count = 1073741823")
    assert store.put_many(batch) == [True] * 300  # not wedged
    store.close()
    assert_sound(tmp_path, dict(first + batch))


class _CommitFails:
    """A connection whose COMMIT fails once as a full disk does, leaving SQLite's
    transaction open (as SQLite may: docs 'Response To Errors Within A Transaction')."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.failed = False

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def close(self) -> None:
        self.real.close()


def test_a_failed_commit_rolls_back_and_leaves_no_transaction_open(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    database = store._index._db
    proxy = _CommitFails(database._db)
    database._db = proxy  # type: ignore[assignment]
    items = blocks_of(34, 3, 1000)
    with pytest.raises(StoreFull):
        store.put_many(items)
    assert not proxy.real.in_transaction
    assert store.digests() == [] and store.used_bytes == 0  # nothing half-indexed is seen
    assert store.put_many(items) == [True] * 3
    store.close()
    assert_sound(tmp_path, dict(items))


def test_an_index_damaged_inside_is_refused_at_open_with_a_clear_error(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    items = blocks_of(35, 1000, 100)
    for first in range(0, 1000, 100):
        store.put_many(items[first:][:100])
    store.close()
    index = tmp_path / "packs.sqlite"
    damaged = bytearray(index.read_bytes())
    damaged[3 * 4096 : 6 * 4096] = b"\x5a" * (3 * 4096)  # pages, not the header
    index.write_bytes(bytes(damaged))
    with pytest.raises(PackError, match="not a usable shard pack index"):
        DiskShardStore(tmp_path)
