"""Pack files: many shard blocks in one file, so a batch costs one file, not one per block.

A holder used to write each block to its own file: on ext4 that is an inode
allocation, a file fsync, a rename and a directory fsync per block, and
allocating inodes alone was a tenth of a 64 MiB put's CPU on the whole
five-node benchmark network (docs/storage.md). A batch of blocks is now
written as one pack:

    b"MVPACK1\\n"                          8-byte magic
    block bytes, back to back             each block at the offset its entry names
    entries: digest (32) | offset (u64 le) | size (u64 le), one per block
    entry count (u64 le) | b"MVPKEND\\n"    the trailer's last 16 bytes

The trailer is written last and the file fsync'd before the pack is
indexed, so a pack cut short by a crash has no valid trailer. The index
(`PackIndex`, a SQLite file) is what the store reads; the trailers are
there to rebuild a lost index from the packs alone.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.codec.erasure import BytesLike
from storage.codec.hashing import DIGEST_SIZE
from storage.errors import StorageError, StoreFull
from storage.store.sqlite import Database

MAGIC = b"MVPACK1\n"
END = b"MVPKEND\n"
_ENTRY = struct.Struct(f"<{DIGEST_SIZE}sQQ")
_TAIL = struct.Struct("<Q8s")
_FILE_MODE = 0o600
_DIR_MODE = 0o700
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
PACKS_PER_DIR = 1 << 16  # packs/<id >> 16>/<id>.pack: no directory grows past 65,536 packs
MAX_ENTRIES = 1 << 20  # a trailer naming more blocks than this is not one we wrote


class PackError(StorageError):
    """A pack file or the pack index is unusable."""


@dataclass(frozen=True)
class BlockLocation:
    """Where one block lies: its pack file, offset and size."""

    path: Path
    offset: int
    size: int


def pack_path(packs_dir: Path, pack: int) -> Path:
    return packs_dir / f"{pack >> 16:06x}" / f"{pack:012x}.pack"


def pack_id(name: str) -> int | None:
    """The id of a pack file's name, or None for anything else."""
    stem, dot, ext = name.partition(".")
    if ext != "pack" or not dot or len(stem) != 12:
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: BytesLike) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def create_empty(path: Path) -> None:
    """An empty file at `path` (a spare pack: opening sweeps it if never written)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE))


def write_pack(
    path: Path, items: Sequence[tuple[bytes, BytesLike]], *, spare: bool = False
) -> list[int]:
    """Write a new pack of `items` (digest, block) at `path` and fsync it; the blocks'
    offsets. The caller fsyncs the directory, unless `spare`: the file exists already,
    empty, its directory entry durable (`create_empty`, then the directory fsync'd), so
    the pack's own fsync makes it whole. On any error the partial file is removed; a
    full disk raises StoreFull."""
    offsets: list[int] = []
    flags = os.O_WRONLY | os.O_CLOEXEC
    fd = os.open(path, flags if spare else flags | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    if spare and os.fstat(fd).st_size:  # never overwrite what is there
        os.close(fd)
        raise PackError(f"spare pack {path.name} is not empty")
    digest = items[0][0] if items else b""
    try:
        _write_all(fd, MAGIC)
        at = len(MAGIC)
        trailer = bytearray()
        for digest, block in items:
            size = memoryview(block).nbytes
            _write_all(fd, block)
            offsets.append(at)
            trailer += _ENTRY.pack(digest, at, size)
            at += size
        trailer += _TAIL.pack(len(items), END)
        _write_all(fd, trailer)
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise StoreFull(f"disk full while writing shard block {digest.hex()}") from None
        raise
    os.close(fd)
    return offsets


def read_trailer(path: Path) -> list[tuple[bytes, int, int]] | None:
    """A pack's entries (digest, offset, size) from its trailer; None if the file is not a
    whole pack (cut short, overwritten, or not a pack at all)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                return None
            end = handle.seek(0, os.SEEK_END)
            if end < len(MAGIC) + _TAIL.size:
                return None
            handle.seek(end - _TAIL.size)
            count, tag = _TAIL.unpack(handle.read(_TAIL.size))
            table = count * _ENTRY.size
            if tag != END or count > MAX_ENTRIES or table > end - len(MAGIC) - _TAIL.size:
                return None
            handle.seek(end - _TAIL.size - table)
            raw = handle.read(table)
    except OSError:
        return None
    limit = end - _TAIL.size - table
    entries = [_ENTRY.unpack_from(raw, i * _ENTRY.size) for i in range(count)]
    if any(offset < len(MAGIC) or offset + size > limit for _, offset, size in entries):
        return None
    return entries


MIGRATIONS = [
    """
    CREATE TABLE packs (
        id INTEGER PRIMARY KEY,
        bytes INTEGER NOT NULL,     -- block bytes written into it
        dead INTEGER NOT NULL DEFAULT 0  -- 1: no live block left, its file is to be removed
    );
    CREATE TABLE blocks (
        digest BLOB PRIMARY KEY,
        pack INTEGER NOT NULL REFERENCES packs(id),
        offset INTEGER NOT NULL,
        size INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX blocks_by_pack ON blocks(pack);
    """,
]


class PackIndex:
    """Which pack holds which block (packs.sqlite): the source of truth of a pack store.

    A pack's blocks become visible in one transaction, after its file is durable; a
    pack whose last block is removed is marked dead in the same transaction that
    removes it, and its file is unlinked after. Thread-safe (one connection, one lock).

    Commits are not fsync'd (synchronous=NORMAL): a power cut may take the last
    ones, never a middle one, and that is an index older than the packs, which
    opening settles (DiskShardStore._open_packs: a whole unindexed pack is adopted
    as its blocks verify, an indexed pack that is gone is forgotten). A batch is
    acknowledged once its pack file and directory are fsync'd; one fsync less per
    batch on the holder's path.
    """

    def __init__(self, path: Path) -> None:
        existed = path.exists()
        if not existed:  # a deleted index's journal must not be replayed into the new one
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        self._db = Database(
            path,
            migrations=MIGRATIONS,
            what="shard pack index",
            error=PackError,
            synchronous="NORMAL",
        )
        self.created = not existed
        self._check(path)

    def _check(self, path: Path) -> None:
        """Refuse an index damaged inside (its header intact): reads would fail later."""
        try:
            with self._db.connection() as db:
                problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            self._db.close()
            raise PackError(
                f"{path} is not a usable shard pack index ({'; '.join(problems)});"
                " delete it to rebuild it from the packs"
            )

    def close(self) -> None:
        self._db.close()

    def flush(self) -> None:
        """Make every commit so far durable (a checkpoint: the log and the file fsync'd)."""
        self._db.checkpoint()

    def add_pack(
        self, pack: int, items: Sequence[tuple[bytes, int]], offsets: Sequence[int]
    ) -> list[bool]:
        """Index a written pack's blocks (digest, size) at `offsets`; per block, whether
        it was new (a digest indexed meanwhile keeps its first copy)."""
        created = []
        try:
            with self._db.transaction() as db:
                db.execute(
                    "INSERT INTO packs (id, bytes) VALUES (?, ?)",
                    (pack, sum(size for _, size in items)),
                )
                for (digest, size), offset in zip(items, offsets, strict=True):
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO blocks (digest, pack, offset, size)"
                        " VALUES (?, ?, ?, ?)",
                        (digest, pack, offset, size),
                    )
                    created.append(cursor.rowcount == 1)
                if not any(created):  # all stored meanwhile by other batches: nothing live
                    db.execute("UPDATE packs SET dead = 1 WHERE id = ?", (pack,))
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise StoreFull(f"disk full while indexing shard pack {pack}") from None
            raise
        return created

    def locate(self, digest: bytes, *, wait: bool = True) -> tuple[int, int, int] | None:
        """(pack, offset, size) of a block, or None; `wait=False`: DatabaseBusy rather
        than wait for another thread's transaction."""
        with self._db.connection(wait=wait) as db:
            row = db.execute(
                "SELECT pack, offset, size FROM blocks WHERE digest = ?", (digest,)
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def contains(self, digest: bytes) -> bool:
        with self._db.connection() as db:
            row = db.execute("SELECT 1 FROM blocks WHERE digest = ?", (digest,)).fetchone()
        return row is not None

    def remove(self, digests: Sequence[bytes]) -> tuple[dict[bytes, int], dict[int, str]]:
        """Drop the rows of `digests` in one transaction: the size of each one that had a
        row, and what became of each pack they were in ("empty": no live block left, the
        pack is marked dead; "sparse": less than half its bytes live; "kept")."""
        removed: dict[bytes, int] = {}
        packs: set[int] = set()
        with self._db.transaction() as db:
            for digest in digests:
                row = db.execute(
                    "SELECT pack, size FROM blocks WHERE digest = ?", (digest,)
                ).fetchone()
                if row is None or digest in removed:
                    continue
                db.execute("DELETE FROM blocks WHERE digest = ?", (digest,))
                removed[digest] = int(row[1])
                packs.add(int(row[0]))
            fates = {pack: self._settle(db, pack) for pack in sorted(packs)}
        return removed, fates

    def drop_pack(self, pack: int) -> int:
        """Forget every block of a pack whose file is gone; the bytes they counted."""
        with self._db.transaction() as db:
            (lost,) = db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM blocks WHERE pack = ?", (pack,)
            ).fetchone()
            db.execute("DELETE FROM blocks WHERE pack = ?", (pack,))
            db.execute("DELETE FROM packs WHERE id = ?", (pack,))
        return int(lost)

    def move(self, old: int, new: int, moved: Sequence[tuple[bytes, int, int]]) -> bool:
        """Point blocks (digest, size, new offset) still in pack `old` at pack `new` and
        mark `old` dead, in one transaction; False (nothing changed) if `old` lost a block
        meanwhile, so the caller leaves the compaction for a later delete."""
        with self._db.transaction() as db:
            (live,) = db.execute("SELECT COUNT(*) FROM blocks WHERE pack = ?", (old,)).fetchone()
            if int(live) != len(moved):
                return False
            db.execute(
                "INSERT INTO packs (id, bytes) VALUES (?, ?)",
                (new, sum(size for _, size, _ in moved)),
            )
            for digest, _size, offset in moved:
                db.execute(
                    "UPDATE blocks SET pack = ?, offset = ? WHERE digest = ? AND pack = ?",
                    (new, offset, digest, old),
                )
            db.execute("UPDATE packs SET dead = 1 WHERE id = ?", (old,))
        return True

    def blocks_of(self, pack: int) -> list[tuple[bytes, int, int]]:
        """(digest, offset, size) of a pack's live blocks, in file order."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT digest, offset, size FROM blocks WHERE pack = ? ORDER BY offset", (pack,)
            ).fetchall()
        return [(bytes(d), int(o), int(s)) for d, o, s in rows]

    def forget_dead(self, pack: int) -> None:
        """Its file is unlinked: drop the dead pack's row."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM packs WHERE id = ? AND dead = 1", (pack,))

    def packs(self) -> dict[int, bool]:
        """Every indexed pack: whether it is dead."""
        with self._db.connection() as db:
            return {int(i): bool(d) for i, d in db.execute("SELECT id, dead FROM packs")}

    def digests(self) -> list[bytes]:
        with self._db.connection() as db:
            return [bytes(d) for (d,) in db.execute("SELECT digest FROM blocks ORDER BY digest")]

    def used_bytes(self) -> int:
        with self._db.connection() as db:
            (used,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM blocks").fetchone()
        return int(used)

    @staticmethod
    def _settle(db: sqlite3.Connection, pack: int) -> str:
        live, live_bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blocks WHERE pack = ?", (pack,)
        ).fetchone()
        if int(live) == 0:
            db.execute("UPDATE packs SET dead = 1 WHERE id = ?", (pack,))
            return "empty"
        (written,) = db.execute("SELECT bytes FROM packs WHERE id = ?", (pack,)).fetchone()
        return "sparse" if 2 * int(live_bytes) < int(written) else "kept"


def read_locations(root: Path) -> list[tuple[bytes, BlockLocation]]:
    """Every indexed block of the store at `root` and where it lies, read-only (safe
    beside a running daemon: for operators and tests that inspect or damage blocks)."""
    path = root / "packs.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        query = "SELECT digest, pack, offset, size FROM blocks ORDER BY digest"
        rows = db.execute(query).fetchall()
    finally:
        db.close()
    packs = root / "packs"
    return [
        (bytes(d), BlockLocation(pack_path(packs, int(p)), int(o), int(s))) for d, p, o, s in rows
    ]


def ensure_dir(directory: Path) -> bool:
    """Create `directory` (one level) if missing; whether it was made (fsync its parent)."""
    try:
        directory.mkdir(mode=_DIR_MODE)
    except FileExistsError:
        return False
    return True
