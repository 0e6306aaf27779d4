"""Shard store on disk: blocks in pack files, indexed by packs.sqlite (storage/store/packs.py).

A batch (`put_many`, or one `put`) becomes one pack under packs/: the file is
written and fsync'd, its directory fsync'd, then its blocks are indexed in
one SQLite transaction; only then is the batch acknowledged. A process killed
at any instant leaves at most a pack file the index does not name: at the next
open its blocks that verify are indexed, a pack cut short is removed, so no
partial block is ever visible. Deleting a block removes
its row; a pack left without live blocks is unlinked, and one left with less
than half its bytes live is compacted (its live blocks copied into a new pack,
re-pointed in one transaction, the old file unlinked).

Stores written before packs kept one file per block under shards/ab/cd/<digest>;
those blocks stay readable, deletable and counted (new blocks go to packs).
Corrupt blocks are copied to quarantine/ for an operator to inspect.
If packs.sqlite is lost, delete it: the next open rebuilds it from the packs'
trailers (docs/storage.md).
"""

from __future__ import annotations

import collections
import errno
import itertools
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from storage.codec.erasure import BytesLike
from storage.codec.hashing import DIGEST_SIZE, block_matches
from storage.errors import ShardNotFound, StorageError, StoreFull
from storage.store.packs import (
    PACKS_PER_DIR,
    BlockLocation,
    PackIndex,
    create_empty,
    ensure_dir,
    fsync_dir,
    pack_id,
    pack_path,
    read_trailer,
    write_pack,
)
from storage.store.shard_store import ShardStore
from storage.store.sqlite import DatabaseBusy

_FILE_MODE = 0o600
FLUSH_DELETES = 16  # a delete of this many blocks or more is checkpointed at once
SPARE_PACKS = 8  # empty pack files kept made ahead (make_spares), refilled below half
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_HEX_LEN = 2 * DIGEST_SIZE


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
        self._packs = self.root / "packs"
        self._legacy = self.root / "shards"  # one file per block (stores before packs)
        self._incoming = self.root / "incoming"  # the old layout's temp files
        self._quarantine_dir = self.root / "quarantine"
        for directory in (self.root, self._packs, self._quarantine_dir):
            if ensure_dir(directory):
                fsync_dir(directory.parent)
        self._dirs_made: set[int] = set()  # pack fan-out directories known to exist
        self._index = PackIndex(self.root / "packs.sqlite")
        self._id_lock = threading.Lock()
        self._spares: collections.deque[tuple[int, Path]] = collections.deque()
        self.swept_incoming = self._sweep_incoming()
        self.swept_packs = 0  # pack files removed at open: unindexed (a crash mid-batch) or dead
        self.rebuilt_blocks = 0  # blocks indexed from unindexed packs' trailers at open
        highest = self._open_packs()
        # What opening settled is durable before any new pack id is handed out: a power
        # cut that took those commits could otherwise pair a pack id freed here with an
        # older row of that id (the index's commits are not fsync'd, see PackIndex).
        self._index.flush()
        self._ids = itertools.count(highest + 1)
        legacy = self._legacy_digests()
        self._has_legacy = bool(legacy)
        legacy_bytes = sum(self._legacy_path(d).stat().st_size for d in legacy)
        self._account_existing(self._index.used_bytes() + legacy_bytes)

    def __repr__(self) -> str:
        return f"DiskShardStore({str(self.root)!r})"

    def close(self) -> None:
        with self._id_lock:
            spares, self._spares = list(self._spares), collections.deque()
        for _pack, path in spares:
            path.unlink(missing_ok=True)
        self._index.close()

    # -- opening ------------------------------------------------------------------

    def _sweep_incoming(self) -> int:
        if not self._incoming.is_dir():
            return 0
        swept = 0
        for entry in os.scandir(self._incoming):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                swept += 1
        if swept:
            fsync_dir(self._incoming)
        return swept

    def _pack_files(self) -> set[int]:
        """The ids of the pack files at their own paths (anything else is left alone)."""
        found: set[int] = set()
        for top in os.scandir(self._packs):
            if not top.is_dir(follow_symlinks=False) or not _is_hex(top.name):
                continue
            self._dirs_made.add(int(top.name, 16))
            for entry in os.scandir(top.path):
                pack = pack_id(entry.name)
                if pack is not None and pack_path(self._packs, pack) == Path(entry.path):
                    found.add(pack)
        return found

    def _open_packs(self) -> int:
        """Settle the packs against the index; the highest pack id seen.

        An indexed pack whose file is gone (packs/ restored older than the index) loses
        its blocks. A whole pack the index does not name is indexed, block by block as
        each verifies: the index was restored older than the packs or lost (then every
        pack is such), or a kill came between the pack's fsync and its commit; removing
        it would lose acknowledged blocks in the first two cases. Verifying keeps a
        forged trailer (a block whose tail looks like one, in a pack cut right after
        it) from naming blocks that are not there. A pack cut short is removed, and so
        is a dead one, or one whose blocks are all indexed in other packs already.
        """
        files = self._pack_files()
        for pack, dead in self._index.packs().items():
            if not dead and pack not in files:
                self._index.drop_pack(pack)
        indexed = self._index.packs()
        for pack in sorted(files - indexed.keys()):
            self._adopt(pack)
        indexed = self._index.packs()
        swept_dirs: set[Path] = set()
        for pack in files:
            if indexed.get(pack, True):  # cut short, or dead
                path = pack_path(self._packs, pack)
                path.unlink()
                swept_dirs.add(path.parent)
                self.swept_packs += 1
        for directory in swept_dirs:  # gone for good before their rows go
            fsync_dir(directory)
        for pack, dead in indexed.items():
            if dead:
                self._index.forget_dead(pack)
        return max([*files, *indexed, 0])

    def _adopt(self, pack: int) -> None:
        """Index an unindexed pack's blocks that verify against its trailer."""
        path = pack_path(self._packs, pack)
        entries = read_trailer(path)
        if entries is None:
            return  # cut short before it was acknowledged: swept
        good: list[tuple[bytes, int, int]] = []
        with open(path, "rb") as handle:
            for digest, offset, size in entries:
                handle.seek(offset)
                if block_matches(digest, handle.read(size)):
                    good.append((digest, offset, size))
        if not good:
            return
        created = self._index.add_pack(pack, [(d, s) for d, _, s in good], [o for _, o, _ in good])
        self.rebuilt_blocks += sum(created)

    # -- layout ---------------------------------------------------------------------

    def _legacy_path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self._legacy / name[:2] / name[2:4] / name

    def _legacy_digests(self) -> list[bytes]:
        found: list[bytes] = []
        if not self._legacy.is_dir():
            return found
        for top in os.scandir(self._legacy):
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
        return found

    def locate(self, digest: bytes) -> BlockLocation | None:
        """Where a block lies on disk (a pack, or an old layout's own file), or None."""
        found = self._index.locate(digest)
        if found is not None:
            pack, offset, size = found
            return BlockLocation(pack_path(self._packs, pack), offset, size)
        if self._has_legacy:
            path = self._legacy_path(digest)
            if path.is_file():
                return BlockLocation(path, 0, path.stat().st_size)
        return None

    def digests(self) -> list[bytes]:
        packed = self._index.digests()
        if not self._has_legacy:
            return packed
        return sorted(set(packed).union(self._legacy_digests()))

    def quarantined(self) -> list[bytes]:
        return sorted(
            bytes.fromhex(e.name)
            for e in os.scandir(self._quarantine_dir)
            if _is_digest_name(e.name)
        )

    def _exists(self, digest: bytes) -> bool:
        if self._index.contains(digest):
            return True
        return self._has_legacy and self._legacy_path(digest).is_file()

    # -- writing --------------------------------------------------------------------

    def _new_pack(self) -> tuple[int, Path]:
        with self._id_lock:
            pack = next(self._ids)
            path = pack_path(self._packs, pack)
            top = pack // PACKS_PER_DIR
            if top not in self._dirs_made:
                if ensure_dir(path.parent):
                    fsync_dir(self._packs)  # the new directory is durable before its packs
                self._dirs_made.add(top)
        return pack, path

    def _take_pack(self) -> tuple[int, Path, bool]:
        """A pack id and path for a write, and whether it is a spare (made ahead)."""
        with self._id_lock:
            if self._spares:
                return (*self._spares.popleft(), True)
        return (*self._new_pack(), False)

    def make_spares(self, count: int = SPARE_PACKS) -> int:
        """Empty pack files made ahead, their directory entries fsync'd once for all: a
        batch written into one pays its own fsync only, not a directory fsync too (each
        fsync is a device cache flush: about a third of a small batch's store time).
        Refilled only once fewer than half are left: one directory fsync per several."""
        with self._id_lock:
            if len(self._spares) > count // 2:
                return 0
            missing = count - len(self._spares)
        made: list[tuple[int, Path]] = []
        try:
            for _ in range(missing):
                pack, path = self._new_pack()
                create_empty(path)
                made.append((pack, path))
            for directory in {path.parent for _, path in made}:
                fsync_dir(directory)
        except BaseException as exc:
            for _, path in made:
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
                raise StoreFull("disk full while making spare shard packs") from None
            raise
        with self._id_lock:
            self._spares.extend(made)
        return len(made)

    def _write(self, digest: bytes, block: BytesLike) -> bool:
        created = [False]
        self._write_many([(digest, block)], created, [0])
        return created[0]

    def _write_many(
        self, items: Sequence[tuple[bytes, BytesLike]], created: list[bool], slots: list[int]
    ) -> None:
        if not items:
            return
        pack, path, spare = self._take_pack()
        offsets = write_pack(path, items, spare=spare)
        try:
            if not spare:
                fsync_dir(path.parent)
            sizes = [(digest, memoryview(block).nbytes) for digest, block in items]
            new = self._index.add_pack(pack, sizes, offsets)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
                raise StoreFull(f"disk full while writing shard pack {pack}") from None
            raise
        for slot, was_new in zip(slots, new, strict=True):
            created[slot] = was_new
        if not any(new):  # every block was stored meanwhile by another batch: marked dead
            self._drop_dead(pack)
            return
        live = sum(size for (_, size), was_new in zip(sizes, new, strict=True) if was_new)
        if 2 * live < sum(size for _, size in sizes):  # racing batches shared a new block:
            self._compact(pack)  # its copy here is dead bytes no delete would ever reclaim

    # -- reading --------------------------------------------------------------------

    def _read(self, digest: bytes) -> bytes:
        for _attempt in range(3):  # a compaction may move the block between look-up and open
            found = self._index.locate(digest)
            if found is None:
                break
            pack, offset, size = found
            try:
                with open(pack_path(self._packs, pack), "rb") as handle:
                    handle.seek(offset)
                    return handle.read(size)  # short if the pack was cut: caught as corrupt
            except FileNotFoundError:
                if self._index.locate(digest) == found:  # not moved: the pack file is gone
                    self._lost(self._index.drop_pack(pack))
                    raise ShardNotFound(digest) from None
        if self._has_legacy:
            try:
                with open(self._legacy_path(digest), "rb") as handle:
                    return handle.read()
            except FileNotFoundError:
                pass
        raise ShardNotFound(digest)

    def _read_cached(self, digest: bytes) -> bytes | None:
        """A pack's block if all of it is in the page cache (a read with RWF_NOWAIT, which
        fails rather than wait for the disk, or comes back short when only part of it is
        there); None then, for a block not in a pack (the old layout) or a pack gone
        (`get` decides those), and while another thread holds the index (a commit)."""
        try:
            found = self._index.locate(digest, wait=False)
        except DatabaseBusy:
            return None
        if found is None:
            return None
        pack, offset, size = found
        try:
            fd = os.open(pack_path(self._packs, pack), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            block = bytearray(size)
            got = os.preadv(fd, [block], offset, os.RWF_NOWAIT)
        except OSError:  # EAGAIN: not cached; EOPNOTSUPP: no such read on this file system
            return None
        finally:
            os.close(fd)
        return bytes(block) if got == size else None

    # -- removing -------------------------------------------------------------------

    def _remove(self, digest: bytes) -> int | None:
        return self._remove_many([digest])[0]

    def _remove_many(self, digests: Sequence[bytes]) -> list[int | None]:
        """One index transaction for the lot; then each pack they left empty is unlinked
        and each left sparse compacted, once (a record's deletion empties its packs)."""
        removed, fates = self._index.remove(digests)
        if len(removed) >= FLUSH_DELETES:
            # Durable now: a power cut that took it would bring the blocks back with
            # no holdings row naming them, and enough of them would outnumber the noted
            # ones and make the start-up sweep keep them all (node/records/removal.py).
            self._index.flush()
        for pack, fate in fates.items():
            if fate == "empty":
                self._drop_dead(pack)
            elif fate == "sparse":
                self._compact(pack)
        return [
            removed[digest] if digest in removed else self._remove_legacy(digest)
            for digest in digests
        ]

    def _remove_legacy(self, digest: bytes) -> int | None:
        if not self._has_legacy:
            return None
        path = self._legacy_path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return None
        fsync_dir(path.parent)
        return size

    def _quarantine(self, digest: bytes) -> int | None:
        location = self.locate(digest)
        if location is None:
            return None
        target = self._quarantine_dir / digest.hex()
        if location.path.parent.parent == self._legacy:
            try:
                os.replace(location.path, target)
            except FileNotFoundError:
                return None
            fsync_dir(self._quarantine_dir)
            fsync_dir(location.path.parent)
            return location.size
        try:
            with open(location.path, "rb") as handle:
                handle.seek(location.offset)
                content = handle.read(location.size)
        except FileNotFoundError:
            content = b""
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._quarantine_dir)
        return self._remove(digest)

    def _drop_dead(self, pack: int) -> None:
        """Unlink a pack the index marked dead, make the unlink durable, then forget it (a
        crash in between is settled at the next open). Forgotten before its unlink reached
        the disk, a pack could come back after a power loss unnamed, and be adopted at open
        with blocks that were deleted."""
        path = pack_path(self._packs, pack)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        self._index.forget_dead(pack)

    def _compact(self, pack: int) -> None:
        """`_compact_if_sparse`, which only saves space: a failure (a full disk) leaves the
        pack as it is, and the delete or write that asked for it stands."""
        try:
            self._compact_if_sparse(pack)
        except (OSError, StorageError, sqlite3.Error):
            return

    def _compact_if_sparse(self, pack: int) -> None:
        """Copy a pack's live blocks into a new pack and retire the old one."""
        live = self._index.blocks_of(pack)
        if not live:
            return  # emptied meanwhile: settled as dead by the delete that emptied it
        old = pack_path(self._packs, pack)
        try:
            with open(old, "rb") as handle:
                items = []
                for digest, offset, size in live:
                    handle.seek(offset)
                    items.append((digest, handle.read(size)))
        except FileNotFoundError:
            return  # gone: a read notices and drops its blocks
        new, path = self._new_pack()
        offsets = write_pack(path, items)
        moved = [(d, len(b), o) for (d, b), o in zip(items, offsets, strict=True)]
        try:
            fsync_dir(path.parent)
            done = self._index.move(pack, new, moved)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if done:
            self._drop_dead(pack)
        else:
            path.unlink(missing_ok=True)


def _is_hex(name: str) -> bool:
    try:
        int(name, 16)
    except ValueError:
        return False
    return True
