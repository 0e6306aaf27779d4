"""Shard store on disk: one file per block under shards/ab/cd/<digest>.

Writes go to incoming/, are fsync'd, then atomically renamed into place and
the directory fsync'd, so a process killed at any instant leaves only
complete blocks under shards/ (leftovers in incoming/ are swept at open).
A batch (`put_many`) writes and fsyncs every block's temp file, creates the
fan-out directories it needs (their parents fsync'd once each), renames all,
then fsyncs each distinct directory once: the same durability as one by one
(the caller acknowledges nothing before it returns) with fewer syscalls.
Corrupt blocks are moved to quarantine/ for an operator to inspect.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

from storage.codec.erasure import BytesLike
from storage.codec.hashing import DIGEST_SIZE
from storage.errors import ShardNotFound, StoreFull
from storage.store.shard_store import ShardStore

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_HEX_LEN = 2 * DIGEST_SIZE


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_digest_name(name: str) -> bool:
    if len(name) != _HEX_LEN:
        return False
    try:
        bytes.fromhex(name)
    except ValueError:
        return False
    return True


class DiskShardStore(ShardStore):
    """Durable block store rooted at a directory (created if absent)."""

    def __init__(self, root: str | os.PathLike[str], capacity: int | None = None) -> None:
        super().__init__(capacity)
        self.root = Path(root)
        self._shards = self.root / "shards"
        self._incoming = self.root / "incoming"
        self._quarantine_dir = self.root / "quarantine"
        # Fan-out directories known to exist (never removed): at most 65,536 + 256.
        self._made: set[Path] = set()
        for directory in (self.root, self._shards, self._incoming, self._quarantine_dir):
            self._ensure_dir(directory)
        self._counter = itertools.count()
        self.swept_incoming = self._sweep_incoming()
        for digest in self.digests():
            self._account_existing(self._path(digest).stat().st_size)

    def __repr__(self) -> str:
        return f"DiskShardStore({str(self.root)!r})"

    def _path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self._shards / name[:2] / name[2:4] / name

    def _ensure_dir(self, directory: Path) -> None:
        for parent in self._make_dirs(directory):
            _fsync_dir(parent)

    def _make_dirs(self, directory: Path) -> set[Path]:
        """Create `directory` and missing ancestors; the parents to fsync (of new ones)."""
        if directory in self._made:
            return set()
        missing = []
        probe = directory
        while probe not in self._made and not probe.exists():
            missing.append(probe)
            probe = probe.parent
        parents = set()
        for path in reversed(missing):
            try:
                path.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                continue
            parents.add(path.parent)
        self._made.add(directory)
        return parents

    def _sweep_incoming(self) -> int:
        swept = 0
        for entry in os.scandir(self._incoming):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                swept += 1
        if swept:
            _fsync_dir(self._incoming)
        return swept

    def digests(self) -> list[bytes]:
        found = []
        for top in os.scandir(self._shards):
            if not top.is_dir(follow_symlinks=False):
                continue
            for mid in os.scandir(top.path):
                if not mid.is_dir(follow_symlinks=False):
                    continue
                found += [
                    bytes.fromhex(e.name)
                    for e in os.scandir(mid.path)
                    if _is_digest_name(e.name) and e.is_file(follow_symlinks=False)
                ]
        return sorted(found)

    def quarantined(self) -> list[bytes]:
        return sorted(
            bytes.fromhex(e.name)
            for e in os.scandir(self._quarantine_dir)
            if _is_digest_name(e.name)
        )

    def _exists(self, digest: bytes) -> bool:
        return self._path(digest).is_file()

    def _write(self, digest: bytes, block: BytesLike) -> bool:
        created = [False]
        self._write_many([(digest, block)], created, [0])
        return created[0]

    def _write_many(
        self, items: Sequence[tuple[bytes, BytesLike]], created: list[bool], slots: list[int]
    ) -> None:
        temps: list[Path] = []
        finals = [self._path(digest) for digest, _ in items]
        renamed: set[Path] = set()
        digest = b""
        try:
            for digest, block in items:
                temps.append(self._incoming / f"{digest.hex()}.{os.getpid()}.{next(self._counter)}")
                self._write_temp(temps[-1], block)
            parents: set[Path] = set()
            for final in finals:
                parents |= self._make_dirs(final.parent)
            for parent in parents:  # new fan-out directories reach the disk before blocks
                _fsync_dir(parent)
            with self._lock:
                for at, (temp, final) in enumerate(zip(temps, finals, strict=True)):
                    if final.exists():
                        continue  # another writer stored it first; its temp goes below
                    os.replace(temp, final)
                    renamed.add(final.parent)
                    created[slots[at]] = True
                    temps[at] = final  # nothing left to remove
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StoreFull(f"disk full while writing shard block {digest.hex()}") from None
            raise
        finally:
            for temp, final in zip(temps, finals, strict=False):
                if temp is not final:  # not renamed (or partly written)
                    temp.unlink(missing_ok=True)
            for directory in renamed:
                _fsync_dir(directory)

    @staticmethod
    def _write_temp(temp: Path, block: BytesLike) -> None:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        try:
            view = memoryview(block).cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read(self, digest: bytes) -> bytes:
        try:
            with open(self._path(digest), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ShardNotFound(digest) from None

    def _remove(self, digest: bytes) -> int | None:
        path = self._path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return None
        _fsync_dir(path.parent)
        return size

    def _quarantine(self, digest: bytes) -> bool:
        try:
            os.replace(self._path(digest), self._quarantine_dir / digest.hex())
        except FileNotFoundError:
            return False
        _fsync_dir(self._quarantine_dir)
        return True
