"""Shard store on disk: one file per block under shards/ab/cd/<digest>.

Writes go to incoming/, are fsync'd, then atomically renamed into place and
the directory fsync'd, so a process killed at any instant leaves only
complete blocks under shards/ (leftovers in incoming/ are swept at open).
Corrupt blocks are moved to quarantine/ for an operator to inspect.
"""

from __future__ import annotations

import errno
import itertools
import os
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
        missing = []
        probe = directory
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                continue
            _fsync_dir(path.parent)

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
        final = self._path(digest)
        temp = self._incoming / f"{digest.hex()}.{os.getpid()}.{next(self._counter)}"
        try:
            self._write_temp(temp, block)
            self._ensure_dir(final.parent)
            with self._lock:
                if final.exists():
                    temp.unlink()
                    return False
                os.replace(temp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno in _NO_SPACE:
                raise StoreFull(f"disk full while writing shard block {digest.hex()}") from None
            raise
        return True

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
