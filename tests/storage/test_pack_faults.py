"""The pack store under an operator's faults and a member's races (review of issue 17).

Each test is a fault found in review: a restored index, a full index, a damaged
index, a failed commit, racing batches that share a new block, a compaction of
a pack cut short or on a full disk, a forged trailer in a pack cut by a crash.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

import storage.store.disk as disk_module
import storage.store.packs as packs_module
from storage.codec.hashing import shard_hash
from storage.errors import CorruptShard, StoreFull
from storage.store.disk import DiskShardStore
from storage.store.holdings import Holdings
from storage.store.packs import END, MAGIC, PackError, read_trailer, write_pack
from storage.store.sqlite import DatabaseBusy
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


def test_an_index_restored_from_an_older_backup_loses_no_acknowledged_block(
    tmp_path: Path,
) -> None:
    items = blocks_of(30, 8, 3000)
    store = DiskShardStore(tmp_path)
    store.put_many(items[:4])
    store.close()
    shutil.copy(tmp_path / "packs.sqlite", tmp_path / "backup.sqlite")
    store = DiskShardStore(tmp_path)
    store.put_many(items[4:])  # acknowledged after the backup
    store.delete_many([d for d, _ in items[:3]])  # compacts the first pack into a new one
    store.close()
    shutil.copy(tmp_path / "backup.sqlite", tmp_path / "packs.sqlite")  # the restore
    again = assert_sound(tmp_path, dict(items[3:]))
    assert again.rebuilt_blocks == 5  # the second batch, and items[3] compacted out of the first


def test_only_the_pack_index_may_lose_its_last_commits_to_a_power_cut(tmp_path: Path) -> None:
    """The pack index commits without an fsync (what a power cut takes is an index older
    than the packs: the test above); the holdings, which say what this node acknowledged
    and so what the start-up sweep keeps, still fsync every commit."""
    store = DiskShardStore(tmp_path)
    holdings = Holdings(tmp_path / "holdings.sqlite")
    try:
        with store._index._db.connection() as db:
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        with holdings._db.connection() as db:
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()
        holdings.close()


def test_what_opening_settles_is_durable_before_a_new_pack_is_written(tmp_path: Path) -> None:
    """Opening adopted a pack and forgot a vanished one: those commits are checkpointed
    (fsync'd) at once, so a power cut later cannot take them and leave a new pack under a
    freed id next to an older row of that id."""
    items = blocks_of(33, 6, 2000)
    store = DiskShardStore(tmp_path)
    store.put_many(items[:3])
    store.put_many(items[3:])
    vanished = store.locate(items[3][0])
    assert vanished is not None
    store.close()
    shutil.copy(tmp_path / "packs.sqlite", tmp_path / "backup.sqlite")
    store = DiskShardStore(tmp_path)
    store.put_many(blocks_of(34, 2, 2000))  # to be adopted after the restore below
    store.close()
    shutil.copy(tmp_path / "backup.sqlite", tmp_path / "packs.sqlite")
    vanished.path.unlink()
    again = DiskShardStore(tmp_path)
    try:
        assert again.rebuilt_blocks == 2 and items[3][0] not in again
        # The index file alone, without its log (what a power cut leaves of commits
        # never fsync'd), already holds the settled state.
        shutil.copy(tmp_path / "packs.sqlite", tmp_path / "file-only.sqlite")
        with sqlite3.connect(tmp_path / "file-only.sqlite") as db:
            rows = db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        assert rows == len(again.digests()) == 5
    finally:
        again.close()


def test_an_index_naming_vanished_packs_counts_only_what_is_there_at_open(
    tmp_path: Path,
) -> None:
    items = blocks_of(31, 6, 2000)
    store = DiskShardStore(tmp_path)
    store.put_many(items[:3])
    store.put_many(items[3:])
    lost = store.locate(items[0][0])
    assert lost is not None
    store.close()
    lost.path.unlink()  # packs/ restored from an older backup than packs.sqlite
    again = assert_sound(tmp_path, dict(items[3:]))
    assert items[0][0] not in again


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


def test_batches_racing_on_a_shared_new_block_leave_no_pack_mostly_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A member sends one big new block in many concurrent batches, each with a tiny
    # block of its own: each batch passes the "already held?" check before any is
    # indexed, so each pack holds a copy of the big block that only one keeps.
    store = DiskShardStore(tmp_path)
    writers = 4
    big = make_block(36, 0)[:60_000]
    tiny = [make_block(36, i + 1)[:100] for i in range(writers)]
    barrier = threading.Barrier(writers)
    real_write_pack = disk_module.write_pack  # type: ignore[attr-defined]
    batches = iter(range(writers))  # the batches' packs; later writes are compactions'

    def write_together(path: Path, items: Any, *, spare: bool = False) -> list[int]:
        if next(batches, None) is not None:  # every batch is past the check before any
            barrier.wait(timeout=60)  # pack is written (next() is atomic under the GIL)
        return real_write_pack(path, items, spare=spare)

    monkeypatch.setattr(disk_module, "write_pack", write_together)
    errors: list[BaseException] = []

    def send(mine: bytes) -> None:
        try:
            store.put_many([(shard_hash(big), big), (shard_hash(mine), mine)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in tiny]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    assert errors == []
    live = {shard_hash(b): b for b in [big, *tiny]}
    assert store.used_bytes == sum(len(b) for b in live.values())
    on_disk = sum(p.stat().st_size for p in pack_files(tmp_path))
    assert on_disk <= 2 * store.used_bytes + 4096, "dead copies of the big block stay on disk"
    store.close()
    assert_sound(tmp_path, live)


def test_compacting_a_pack_cut_short_keeps_used_bytes_true(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    items = blocks_of(37, 4, 2000)
    store.put_many(items)
    last = store.locate(items[3][0])
    assert last is not None
    os.truncate(last.path, last.offset + 100)  # a torn restore cuts the last block
    store.delete_many([d for d, _ in items[:3]])  # leaves the pack sparse: compacted
    assert store.used_bytes == 2000
    with pytest.raises(CorruptShard):
        store.get(items[3][0])
    assert store.used_bytes == 0 == sum(len(store.get(d)) for d in store.digests())
    store.close()
    assert_sound(tmp_path, {})


def test_a_full_disk_during_compaction_still_deletes_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    items = blocks_of(38, 4, 2000)
    store.put_many(items)

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    assert store.delete_many([d for d, _ in items[:3]]) == 3  # the compaction cannot write
    monkeypatch.undo()
    assert store.used_bytes == 2000
    assert store.digests() == [items[3][0]]
    assert store.get(items[3][0]) == items[3][1]
    store.close()
    assert_sound(tmp_path, dict(items[3:]))


def test_a_forged_trailer_in_a_pack_cut_by_a_crash_names_no_block(tmp_path: Path) -> None:
    # A member's block ends in what looks like a pack trailer naming a victim's digest.
    # If a crash cuts the pack right after that block, the cut pack looks whole.
    victim = make_block(39, 0)[:3000]
    forged_entry = struct.pack(f"<{len(shard_hash(victim))}sQQ", shard_hash(victim), 8, 3000)
    body = make_block(39, 1)[:3000]
    block = body + forged_entry + struct.pack("<Q8s", 1, END)
    DiskShardStore(tmp_path).close()
    cut = tmp_path / "packs" / "000000" / "000000000005.pack"
    cut.parent.mkdir(mode=0o700, exist_ok=True)
    cut.write_bytes(MAGIC + block)  # the pack as a kill after this block's write left it
    assert read_trailer(cut) is not None  # it does look whole
    (tmp_path / "packs.sqlite").unlink()  # and the index is rebuilt from the trailers
    store = DiskShardStore(tmp_path)
    assert shard_hash(victim) not in store
    assert store.put(shard_hash(victim), victim) is True  # stored, not "already held"
    assert store.get(shard_hash(victim)) == victim
    store.close()
    assert_sound(tmp_path, {shard_hash(victim): victim})


def test_racing_compactions_leave_no_empty_pack(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    items = blocks_of(40, 8, 1000)
    store.put_many(items)
    (pack,) = store._index.packs()
    store.delete_many([d for d, _ in items[:5]])  # compacted: three blocks move
    store._compact_if_sparse(pack)  # a second compaction of the same pack, late
    store.close()
    assert_sound(tmp_path, dict(items[5:]))


def test_a_whole_unindexed_pack_left_by_a_kill_before_the_commit_is_indexed(
    tmp_path: Path,
) -> None:
    store = DiskShardStore(tmp_path)
    kept = blocks_of(41, 2, 2000)
    store.put_many(kept)
    store.close()
    written = blocks_of(42, 2, 2000)  # fsync'd, killed before the commit: whole, unindexed
    write_pack(tmp_path / "packs" / "000000" / "000000000002.pack", written)
    again = assert_sound(tmp_path, dict(kept + written))
    assert again.swept_packs == 0


# -- spare packs: made ahead, so a batch pays one fsync ------------------------------


def test_a_batch_in_a_spare_pack_pays_one_fsync_and_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    assert store.make_spares() == disk_module.SPARE_PACKS
    assert store.make_spares() == 0  # already there
    synced: list[int] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    items = blocks_of(40, 3, 3000)
    store.put_many(items)
    assert len(synced) == 1  # the pack's own; its directory entry was durable already
    store.put_many(blocks_of(41, 1, 3000))
    assert len(synced) == 2
    monkeypatch.undo()
    store.close()
    assert_sound(tmp_path, dict([*items, *blocks_of(41, 1, 3000)]))


def test_spares_left_by_a_crash_are_swept_and_new_ids_never_collide(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    store.make_spares()
    items = blocks_of(42, 2, 2000)
    store.put_many(items[:1])
    spare_ids = [pack for pack, _ in store._spares]
    # a kill: no close, the unused spares stay on disk
    again = DiskShardStore(tmp_path)
    assert again.swept_packs == len(spare_ids)
    again.put_many(items[1:])
    new = again._index.locate(items[1][0])
    assert new is not None and new[0] > max(spare_ids)
    again.close()
    assert_sound(tmp_path, dict(items))


def test_closing_removes_unused_spares(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    store.make_spares()
    assert len(pack_files(tmp_path)) == disk_module.SPARE_PACKS
    store.close()
    assert pack_files(tmp_path) == []
    assert DiskShardStore(tmp_path).swept_packs == 0


def test_a_spare_someone_wrote_into_is_refused_not_overwritten(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    store.make_spares(1)
    _, path = store._spares[0]
    path.write_bytes(b"not ours")
    with pytest.raises(PackError, match="not empty"):
        store.put_many(blocks_of(43, 1, 1000))
    assert path.read_bytes() == b"not ours"
    store.put_many(blocks_of(43, 1, 1000))  # the next write takes a fresh pack
    store.close()


def test_making_spares_on_a_full_disk_is_store_full_and_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    made = 0

    def full_after_two(path: Path) -> None:
        nonlocal made
        if made == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        made += 1
        real_create(path)

    real_create = packs_module.create_empty
    monkeypatch.setattr(disk_module, "create_empty", full_after_two)
    with pytest.raises(StoreFull, match="spare"):
        store.make_spares()
    assert pack_files(tmp_path) == [] and not store._spares
    monkeypatch.undo()
    items = blocks_of(44, 2, 1000)
    store.put_many(items)  # without spares, as before
    store.close()
    assert_sound(tmp_path, dict(items))


# -- reads that must not wait for the disk (an event loop's) --------------------------


def test_a_cached_read_serves_from_the_page_cache_only(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    (digest, block), (other, _) = blocks_of(50, 2, 300_000)
    store.put_many([(digest, block)])
    assert store.get_cached(digest) == block  # just written: in the page cache
    location = store.locate(digest)
    assert location is not None
    with open(location.path, "rb") as handle:  # the pack's clean pages dropped
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert store.get_cached(digest) is None  # it would wait for the disk
    assert store.get(digest) == block  # a worker's read does
    assert store.get_cached(digest) == block  # and leaves it cached
    assert store.get_cached(other) is None  # not held
    store.close()


def test_a_cached_read_of_a_damaged_block_writes_nothing_and_leaves_it_to_get(
    tmp_path: Path,
) -> None:
    store = DiskShardStore(tmp_path)
    ((digest, block),) = blocks_of(51, 1, 5000)
    store.put_many([(digest, block)])
    location = store.locate(digest)
    assert location is not None
    with open(location.path, "r+b") as handle:
        handle.seek(location.offset + 10)
        handle.write(b"\xff" if block[10] != 0xFF else b"\x00")
    assert store.get_cached(digest) is None
    assert digest in store and store.quarantined() == []  # nothing moved on the loop
    with pytest.raises(CorruptShard):
        store.get(digest)
    assert store.quarantined() == [digest]
    store.close()


def test_a_cached_read_does_not_wait_for_a_busy_index(tmp_path: Path) -> None:
    """While another thread holds the pack index (a commit, a large delete), a cached read
    gives up at once instead of waiting: the event loop's caller reads in a worker."""
    store = DiskShardStore(tmp_path)
    ((digest, block),) = blocks_of(52, 1, 5000)
    store.put_many([(digest, block)])
    with store._index._db.lock:  # as a worker thread's transaction would
        assert store.get_cached(digest) is None
        with pytest.raises(DatabaseBusy):
            store._index.locate(digest, wait=False)
    assert store.get_cached(digest) == block
    store.close()


def test_a_large_delete_is_durable_at_once(tmp_path: Path) -> None:
    """A record's deletion (many blocks) is checkpointed: the index file alone, without its
    log (what a power cut may leave), no longer names the blocks, which would come back
    unnoted and could make the start-up sweep keep everything."""
    store = DiskShardStore(tmp_path)
    items = blocks_of(53, disk_module.FLUSH_DELETES + 4, 1000)
    store.put_many(items)
    store.delete_many([d for d, _ in items[:-2]])
    shutil.copy(tmp_path / "packs.sqlite", tmp_path / "file-only.sqlite")
    with sqlite3.connect(tmp_path / "file-only.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 2
    store.close()


def test_packs_swept_at_open_are_gone_for_good_before_their_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead pack removed at open has its directory fsync'd before the index forgets it
    (and the forgetting is checkpointed): a power cut cannot bring it back unindexed."""
    store = DiskShardStore(tmp_path)
    items = blocks_of(54, 2, 1000)
    store.put_many(items[:1])
    store.put_many(items[1:])
    dead = store._index.locate(items[0][0])
    assert dead is not None
    store._index.remove([items[0][0]])  # emptied and marked dead, its file left (a kill)
    store.close()
    order: list[str] = []
    real_fsync_dir = packs_module.fsync_dir
    real_forget = packs_module.PackIndex.forget_dead

    def fsync_dir(path: Path) -> None:
        order.append("fsync_dir")
        real_fsync_dir(path)

    def forget_dead(self: Any, pack: int) -> None:
        order.append("forget")
        real_forget(self, pack)

    monkeypatch.setattr(disk_module, "fsync_dir", fsync_dir)
    monkeypatch.setattr(packs_module.PackIndex, "forget_dead", forget_dead)
    again = DiskShardStore(tmp_path)
    assert again.swept_packs == 1 and "forget" in order
    assert "fsync_dir" in order[: order.index("forget")]
    again.close()
