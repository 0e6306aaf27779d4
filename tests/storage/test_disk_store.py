"""What only the disk backend must do: layout, durability, recovery after a crash."""

from __future__ import annotations

import errno
import itertools
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from storage.codec.hashing import shard_hash
from storage.errors import BlockMismatch, StoreFull
from storage.store.disk import DiskShardStore
from tests.storage.crash_writer import make_block

REPO = Path(__file__).resolve().parents[2]


def test_layout_and_permissions(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path / "data")
    data = b"block" * 100
    digest = shard_hash(data)
    store.put(digest, data)
    name = digest.hex()
    path = tmp_path / "data" / "shards" / name[:2] / name[2:4] / name
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "shards").stat().st_mode) == 0o700
    assert list((tmp_path / "data" / "incoming").iterdir()) == []


def test_reopen_keeps_blocks_and_accounting(tmp_path: Path) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(1, i)[:5000] for i in range(5)]
    for data in blocks:
        store.put(shard_hash(data), data)
    again = DiskShardStore(tmp_path, capacity=10**6)
    assert again.digests() == sorted(shard_hash(b) for b in blocks)
    assert again.used_bytes == sum(len(b) for b in blocks)
    assert again.swept_incoming == 0


def test_leftover_temp_files_are_swept_and_strays_ignored(tmp_path: Path) -> None:
    DiskShardStore(tmp_path)
    (tmp_path / "incoming" / "abc.123.0").write_bytes(b"half a block")
    (tmp_path / "shards" / "zz").mkdir()
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
    assert list((tmp_path / "incoming").iterdir()) == []
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
    assert list((root / "incoming").iterdir()) == []
    assert store.used_bytes == sum(len(store.get(d)) for d in listed)
    return store


def test_sigkill_mid_write_leaves_only_complete_blocks(tmp_path: Path) -> None:
    # Deterministic: the writer is killed half-way through its 4th block's temp file.
    proc = _start_writer(tmp_path, seed=7, stall_at=3)
    acked = _acks_until_killed(proc, kill_after=10**6)
    assert len(acked) == 3
    partial = list((tmp_path / "incoming").iterdir())
    assert len(partial) == 1, "the crash should land inside a temp-file write"
    store = _assert_consistent(tmp_path, set(acked))
    assert store.swept_incoming == 1
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
    # Batches of 4: killed half-way through the 3rd block of the 2nd batch, after its
    # first two temp files were written and fsync'd but before any rename.
    proc = _start_writer(tmp_path, seed=11, stall_at=6, batch=4)
    acked = _acks_until_killed(proc, kill_after=10**6)
    assert len(acked) == 4, "only the first batch was acknowledged"
    assert len(list((tmp_path / "incoming").iterdir())) == 3
    store = _assert_consistent(tmp_path, set(acked))
    assert store.swept_incoming == 3
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


def test_a_batch_fsyncs_each_block_and_each_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    blocks = [make_block(3, i)[:3000] for i in range(40)]
    store.put_many([(shard_hash(b), b) for b in blocks[:20]])
    batch = blocks[20:] + blocks[:2]  # two already held: skipped, neither written nor fsync'd
    calls = _count_fsyncs(monkeypatch)
    assert store.put_many([(shard_hash(b), b) for b in batch]) == [True] * 20 + [False] * 2
    assert calls.count("file") == 20
    leaves = {shard_hash(b).hex()[:4] for b in blocks[20:]}
    tops = {name[:2] for name in leaves}
    # each leaf once (not once per block), plus the parents of any leaves made new
    assert len(leaves) <= calls.count("dir") <= len(leaves) + len(tops) + 1
    assert list((tmp_path / "incoming").iterdir()) == []
    assert store.used_bytes == 40 * 3000


def test_blocks_sharing_a_directory_fsync_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskShardStore(tmp_path)
    by_leaf: dict[str, list[bytes]] = {}
    for i in itertools.count():  # three blocks whose digests share a fan-out directory
        block = b"block %d" % i
        group = by_leaf.setdefault(shard_hash(block).hex()[:4], [])
        group.append(block)
        if len(group) == 3:
            break
    first, *shared = group
    store.put(shard_hash(first), first)  # the leaf directory exists now
    calls = _count_fsyncs(monkeypatch)
    store.put_many([(shard_hash(b), b) for b in shared])
    assert calls == ["file", "file", "dir"]  # one by one, the leaf was fsync'd twice


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
    assert list((tmp_path / "incoming").iterdir()) == []
    assert store.used_bytes == 0
    assert store.put_many([(shard_hash(b), b) for b in blocks]) == [True] * 4
    assert DiskShardStore(tmp_path).used_bytes == store.used_bytes == 8000
