"""What only the disk backend must do: layout, durability, recovery after a crash."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from storage.codec.hashing import shard_hash
from storage.errors import BlockMismatch, CorruptShard, ShardNotFound, StoreFull
from storage.store.disk import DiskShardStore
from storage.store.packs import (
    MAGIC,
    BlockLocation,
    PackError,
    read_locations,
    read_trailer,
    write_pack,
)
from tests.storage.crash_writer import make_block

REPO = Path(__file__).resolve().parents[2]


def pack_files(root: Path) -> list[Path]:
    return sorted((root / "packs").rglob("*.pack"))


def test_layout_and_permissions(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path / "data")
    data = b"block" * 100
    digest = shard_hash(data)
    store.put(digest, data)
    (pack,) = pack_files(tmp_path / "data")
    assert pack == tmp_path / "data" / "packs" / "000000" / "000000000001.pack"
    where = store.locate(digest)
    assert where == BlockLocation(pack, len(MAGIC), len(data))
    assert pack.read_bytes()[where.offset : where.offset + where.size] == data
    assert read_trailer(pack) == [(digest, len(MAGIC), len(data))]
    assert read_locations(tmp_path / "data") == [(digest, where)]  # read-only, beside it
    assert stat.S_IMODE(pack.stat().st_mode) == 0o600
    for directory in ("packs", "packs/000000", "quarantine"):
        assert stat.S_IMODE((tmp_path / "data" / directory).stat().st_mode) == 0o700
    assert not (tmp_path / "data" / "shards").exists()  # the old layout is not made


def _old_layout_block(root: Path, data: bytes) -> bytes:
    """A block as a store before packs kept it: its own file under shards/ab/cd/."""
    digest = shard_hash(data)
    name = digest.hex()
    path = root / "shards" / name[:2] / name[2:4] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def test_blocks_of_the_old_layout_stay_readable_deletable_and_counted(tmp_path: Path) -> None:
    old = [make_block(9, i)[:3000] for i in range(4)]
    digests = [_old_layout_block(tmp_path, b) for b in old]
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "abc.123.0").write_bytes(b"half a block")  # the old temp files
    store = DiskShardStore(tmp_path)
    assert store.swept_incoming == 1
    assert store.used_bytes == 4 * 3000
    new = make_block(9, 10)[:2000]
    store.put(shard_hash(new), new)
    assert store.digests() == sorted([*digests, shard_hash(new)])
    assert store.get(digests[0]) == old[0]
    assert store.put(digests[1], old[1]) is False  # already held, in its old file
    assert store.delete(digests[1]) is True
    assert digests[1] not in store
    name = digests[2].hex()
    (tmp_path / "shards" / name[:2] / name[2:4] / name).write_bytes(b"rot")
    with pytest.raises(CorruptShard):
        store.get(digests[2])
    assert store.quarantined() == [digests[2]]
    assert DiskShardStore(tmp_path).used_bytes == 2 * 3000 + 2000


def test_cut_unindexed_packs_are_swept_whole_ones_indexed_and_strays_ignored(
    tmp_path: Path,
) -> None:
    store = DiskShardStore(tmp_path)
    kept = make_block(1, 1)[:5000]
    store.put(shard_hash(kept), kept)
    store.close()
    whole = make_block(1, 2)[:5000]  # fsync'd, never indexed: a kill before the commit
    write_pack(tmp_path / "packs" / "000000" / "000000000006.pack", [(shard_hash(whole), whole)])
    stray = make_block(1, 3)[:5000]  # cut short by a kill mid-write
    cut = tmp_path / "packs" / "000000" / "000000000007.pack"
    write_pack(cut, [(shard_hash(stray), stray)])
    os.truncate(cut, 3000)
    (tmp_path / "packs" / "000000" / "README").write_text("not a pack")
    (tmp_path / "packs" / "notes").mkdir()
    again = DiskShardStore(tmp_path)
    assert again.swept_packs == 1
    assert again.rebuilt_blocks == 1
    assert again.digests() == sorted([shard_hash(kept), shard_hash(whole)])
    assert again.used_bytes == 10_000
    assert (tmp_path / "packs" / "000000" / "README").exists()
    again.put(shard_hash(stray), stray)  # numbered after every pack seen, swept or not
    assert again.locate(shard_hash(stray)).path.name == "000000000008.pack"  # type: ignore[union-attr]


def test_reopen_keeps_blocks_and_accounting(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(1, i)[:5000] for i in range(5)]
    for data in blocks:
        store.put(shard_hash(data), data)
    again = DiskShardStore(tmp_path, capacity=10**6)
    assert again.digests() == sorted(shard_hash(b) for b in blocks)
    assert again.used_bytes == sum(len(b) for b in blocks)
    assert again.swept_incoming == again.swept_packs == 0


def test_the_old_layouts_leftover_temp_files_are_swept_and_strays_ignored(
    tmp_path: Path,
) -> None:
    (tmp_path / "incoming").mkdir(parents=True)
    (tmp_path / "incoming" / "abc.123.0").write_bytes(b"half a block")
    (tmp_path / "shards" / "zz").mkdir(parents=True)
    (tmp_path / "shards" / "README").write_text("not a block")
    store = DiskShardStore(tmp_path)
    assert store.swept_incoming == 1
    assert list((tmp_path / "incoming").iterdir()) == []
    assert store.digests() == []


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (errno.ENOSPC, StoreFull, "disk full while writing shard block"),
        (errno.EDQUOT, StoreFull, "disk full while writing shard block"),
        (errno.EIO, OSError, "Input/output error"),
    ],
)
def test_write_errors_are_reported_and_leave_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
    message: str,
) -> None:
    store = DiskShardStore(tmp_path)
    kept = b"kept" * 10
    store.put(shard_hash(kept), kept)

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", failing_write)
    data = b"x" * 4096
    with pytest.raises(error, match=message):
        store.put(shard_hash(data), data)
    monkeypatch.undo()
    assert shard_hash(data) not in store
    assert len(pack_files(tmp_path)) == 1  # the kept block's; the failed one was removed
    assert store.used_bytes == len(kept)
    assert store.get(shard_hash(kept)) == kept


def _start_writer(
    root: Path, seed: int, stall_at: int = -1, batch: int = 0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.storage.crash_writer",
            str(root),
            "--seed",
            str(seed),
            "--stall-at",
            str(stall_at),
            "--batch",
            str(batch),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _acks_until_killed(proc: subprocess.Popen[str], kill_after: int) -> list[bytes]:
    """Read acknowledged digests; SIGKILL the writer after `kill_after` lines."""
    assert proc.stdout is not None
    acked = []
    try:
        for line in proc.stdout:
            if line.strip() == "stalled":
                break
            acked.append(bytes.fromhex(line.strip()))
            if len(acked) >= kill_after:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer must die by SIGKILL, not finish"
    return acked


def _assert_consistent(root: Path, acked: set[bytes]) -> DiskShardStore:
    store = DiskShardStore(root)
    listed = set(store.digests())
    assert acked <= listed, "an acknowledged write was lost"
    assert store.scrub() == [], "a partial or corrupt block is visible after the crash"
    assert len(pack_files(root)) == len(store._index.packs())  # every file left is indexed
    assert store.used_bytes == sum(len(store.get(d)) for d in listed)
    return store


def test_sigkill_mid_write_leaves_only_complete_blocks(tmp_path: Path) -> None:
    # Deterministic: the writer is killed half-way through its 4th block's temp file.
    proc = _start_writer(tmp_path, seed=7, stall_at=3)
    acked = _acks_until_killed(proc, kill_after=10**6)
    assert len(acked) == 3
    assert len(pack_files(tmp_path)) == 4, "the crash should land inside a pack's write"
    assert read_trailer(pack_files(tmp_path)[-1]) is None  # cut short: no trailer
    store = _assert_consistent(tmp_path, set(acked))
    assert store.swept_packs == 1
    assert store.digests() == sorted(acked)
    stalled_block = make_block(7, 3)
    assert shard_hash(stalled_block) not in store


def test_repeated_sigkill_at_arbitrary_moments(tmp_path: Path) -> None:
    # Free-running: killed wherever it happens to be, several times over one store.
    acked: set[bytes] = set()
    for round_number, kill_after in enumerate((5, 2, 9, 1, 4)):
        proc = _start_writer(tmp_path, seed=100 + round_number)
        acked |= set(_acks_until_killed(proc, kill_after))
        _assert_consistent(tmp_path, acked)
    assert len(acked) >= 21
    survivors = DiskShardStore(tmp_path)
    for digest in acked:
        assert shard_hash(survivors.get(digest)) == digest
    assert os.listdir(tmp_path / "quarantine") == []


def test_sigkill_mid_batch_leaves_only_acknowledged_batches(tmp_path: Path) -> None:
    # Batches of 4: killed half-way through the 3rd block of the 2nd batch's pack, after
    # its first two blocks were written but before the pack was fsync'd and indexed.
    proc = _start_writer(tmp_path, seed=11, stall_at=6, batch=4)
    acked = _acks_until_killed(proc, kill_after=10**6)
    assert len(acked) == 4, "only the first batch was acknowledged"
    assert len(pack_files(tmp_path)) == 2
    store = _assert_consistent(tmp_path, set(acked))
    assert store.swept_packs == 1
    assert store.digests() == sorted(acked), "no block of the unacknowledged batch is visible"


def test_repeated_sigkill_during_batches(tmp_path: Path) -> None:
    acked: set[bytes] = set()
    for round_number, kill_after in enumerate((3, 8, 1)):
        proc = _start_writer(tmp_path, seed=200 + round_number, batch=3)
        acked |= set(_acks_until_killed(proc, kill_after))
        _assert_consistent(tmp_path, acked)
    assert len(acked) >= 12


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record 'file' or 'dir' for every fsync the store makes."""
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_a_batch_is_one_pack_one_file_fsync_and_one_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(3, i)[:3000] for i in range(40)]
    store.put_many([(shard_hash(b), b) for b in blocks[:20]])
    batch = blocks[20:] + blocks[:2]  # two already held: skipped, not written again
    calls = _count_fsyncs(monkeypatch)
    assert store.put_many([(shard_hash(b), b) for b in batch]) == [True] * 20 + [False] * 2
    assert calls == ["file", "dir"]  # (the index commit fsyncs inside SQLite)
    assert len(pack_files(tmp_path)) == 2
    assert store.used_bytes == 40 * 3000
    assert all(store.get(shard_hash(b)) == b for b in blocks)


def test_a_batch_with_one_bad_block_stores_none(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    good = [make_block(4, i)[:2000] for i in range(3)]
    items = [(shard_hash(b), b) for b in good]
    items[1] = (items[1][0], good[1][:-1] + b"!")  # a peer lies about one block
    with pytest.raises(BlockMismatch):
        store.put_many(items)
    assert store.digests() == []
    assert store.used_bytes == 0


def test_a_batch_over_the_quota_is_refused_whole(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path, capacity=5000)
    blocks = [make_block(5, i)[:2000] for i in range(3)]
    with pytest.raises(StoreFull):
        store.put_many([(shard_hash(b), b) for b in blocks])
    assert store.digests() == []
    assert store.used_bytes == 0
    # the same block twice in one batch is charged and written once
    one = blocks[0]
    assert store.put_many([(shard_hash(one), one)] * 2) == [True, False]
    assert store.used_bytes == 2000


def test_a_write_error_mid_batch_leaves_nothing_and_keeps_accounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(6, i)[:2000] for i in range(4)]
    real_write = os.write
    writes = 0

    def third_fails(fd: int, data: memoryview) -> int:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", third_fails)
    with pytest.raises(StoreFull, match="disk full"):
        store.put_many([(shard_hash(b), b) for b in blocks])
    monkeypatch.undo()
    assert store.digests() == []
    assert pack_files(tmp_path) == []
    assert store.used_bytes == 0
    assert store.put_many([(shard_hash(b), b) for b in blocks]) == [True] * 4
    assert DiskShardStore(tmp_path).used_bytes == store.used_bytes == 8000


def test_deleting_empties_packs_and_compacts_sparse_ones(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(12, i)[:2000] for i in range(4)]
    digests = [shard_hash(b) for b in blocks]
    store.put_many(list(zip(digests, blocks, strict=True)))
    (first,) = pack_files(tmp_path)
    store.delete(digests[0])
    store.delete(digests[1])  # half live: kept as it is
    assert pack_files(tmp_path) == [first]
    store.delete(digests[2])  # a quarter live: its last block moves to a new pack
    (second,) = pack_files(tmp_path)
    assert second != first
    assert not first.exists()
    assert read_trailer(second) == [(digests[3], len(MAGIC), 2000)]
    assert store.get(digests[3]) == blocks[3]
    assert store.used_bytes == 2000
    assert DiskShardStore(tmp_path).digests() == [digests[3]]
    store.delete(digests[3])
    assert pack_files(tmp_path) == []
    assert store.used_bytes == 0 == DiskShardStore(tmp_path).used_bytes


def test_a_vanished_pack_reads_as_missing_and_its_blocks_can_be_stored_again(
    tmp_path: Path,
) -> None:
    store = DiskShardStore(tmp_path)
    kept, lost = make_block(13, 0)[:3000], make_block(13, 1)[:3000]
    store.put(shard_hash(kept), kept)
    store.put(shard_hash(lost), lost)
    where = store.locate(shard_hash(lost))
    assert where is not None
    where.path.unlink()  # an operator's mistake, a bad restore
    with pytest.raises(ShardNotFound):
        store.get(shard_hash(lost))
    assert shard_hash(lost) not in store  # forgotten, so repair can store it again
    assert store.used_bytes == 3000
    assert store.put(shard_hash(lost), lost) is True
    assert store.get(shard_hash(lost)) == lost
    assert store.get(shard_hash(kept)) == kept


def test_a_pack_cut_short_loses_only_the_blocks_past_the_cut(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(14, i)[:3000] for i in range(3)]
    digests = [shard_hash(b) for b in blocks]
    store.put_many(list(zip(digests, blocks, strict=True)))
    middle = store.locate(digests[1])
    assert middle is not None
    os.truncate(middle.path, middle.offset + 100)  # a torn copy of the data directory
    assert store.scrub() == sorted(digests[1:])
    assert store.digests() == [digests[0]]
    assert store.get(digests[0]) == blocks[0]
    assert store.quarantined() == sorted(digests[1:])
    assert store.used_bytes == 3000


def test_a_lost_index_is_rebuilt_from_the_pack_trailers(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(15, i)[:4000] for i in range(6)]
    digests = [shard_hash(b) for b in blocks]
    store.put_many(list(zip(digests[:3], blocks[:3], strict=True)))
    store.put_many(list(zip(digests[3:], blocks[3:], strict=True)))
    journal = (tmp_path / "packs.sqlite-wal").read_bytes()
    store.close()
    (tmp_path / "packs.sqlite-wal").write_bytes(journal)  # left behind with the old index
    cut = tmp_path / "packs" / "000000" / "000000000009.pack"  # a pack torn by a crash
    write_pack(cut, [(shard_hash(b"x" * 5000), b"x" * 5000)])
    os.truncate(cut, 3000)
    (tmp_path / "packs.sqlite").unlink()  # its -wal is left behind, as an operator might
    again = DiskShardStore(tmp_path)
    assert again.rebuilt_blocks == 6
    assert again.swept_packs == 1
    assert again.digests() == sorted(digests)
    assert again.used_bytes == 6 * 4000
    assert all(again.get(d) == b for d, b in zip(digests, blocks, strict=True))


def test_a_read_follows_a_block_a_compaction_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(16, i)[:2000] for i in range(4)]
    digests = [shard_hash(b) for b in blocks]
    store.put_many(list(zip(digests, blocks, strict=True)))
    stale = store._index.locate(digests[3])
    for digest in digests[:3]:
        store.delete(digest)  # the last one compacts: digests[3] moves, the old pack goes
    real_locate = store._index.locate
    answers = iter([stale])

    def locate_once_stale(digest: bytes) -> tuple[int, int, int] | None:
        return next(answers, None) or real_locate(digest)

    monkeypatch.setattr(store._index, "locate", locate_once_stale)
    assert store.get(digests[3]) == blocks[3]  # looked up again, not reported missing
    assert store.used_bytes == 2000


def test_concurrent_batches_of_overlapping_blocks_store_each_once(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(17, i)[:1500] for i in range(24)]
    items = [(shard_hash(b), b) for b in blocks]
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for first in range(0, 24, 6):
                batch = items[(first + offset) % 24 :][:6] or items[:6]
                store.put_many(batch)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i * 3,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.digests() == sorted(d for d, _ in items)
    assert store.used_bytes == 24 * 1500 == DiskShardStore(tmp_path).used_bytes
    assert all(store.get(d) == b for d, b in items)
    assert len(pack_files(tmp_path)) == len(store._index.packs())  # no dead pack left


def test_a_damaged_index_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    DiskShardStore(tmp_path).close()
    (tmp_path / "packs.sqlite").write_bytes(b"not a database, " * 64)
    with pytest.raises(PackError, match="not a usable shard pack index"):
        DiskShardStore(tmp_path)


def test_deleting_a_records_blocks_together_empties_its_packs_without_compacting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(18, i)[:2000] for i in range(9)]
    digests = [shard_hash(b) for b in blocks]
    for first in (0, 3, 6):  # three packs of three
        store.put_many(list(zip(digests[first:][:3], blocks[first:][:3], strict=True)))
    calls = _count_fsyncs(monkeypatch)
    assert store.delete_many([*digests[:7], digests[0], b"\x00" * 32]) == 7
    assert calls == ["dir", "dir"]  # two packs unlinked (each unlink made durable), none copied
    assert len(pack_files(tmp_path)) == 1
    assert store.digests() == sorted(digests[7:])
    assert store.used_bytes == 2 * 2000 == DiskShardStore(tmp_path).used_bytes
    with pytest.raises(ValueError, match="32 bytes"):
        store.delete_many([b"short"])
