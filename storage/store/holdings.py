"""What shards of which records this node holds (SQLite beside the shard files).

The blocks themselves live in the content-addressed shard store; this table
says which record and shard index they belong to, keeps each held record's
manifest (a holder verifies and repairs with it, without the record key), and
marks an index complete only once every segment's block of it is stored, so
a holder killed in the middle of a transfer never claims an index it lacks.
Blocks may arrive before the manifest (a streaming put knows it only at the
end): the record is then noted without one until it comes, and each block's
digest is noted as it is stored, so the blocks of an upload that never
finished can still be found and collected. Times (ms) come from the caller.

What a record weighs here (`pending_weights`): its noted blocks' sizes, its
manifest's length and `ROW_WEIGHT` per shard index begun, so that even a
batch without blocks costs its sender something. `begin` and `note_blocks`
return the weight they added, so a caller can keep the sums in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence, Set
from pathlib import Path

from storage.errors import StorageError
from storage.store.sqlite import Database, statements

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id BLOB PRIMARY KEY, manifest BLOB, first_seen INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS shards (
    record_id BLOB NOT NULL, shard_index INTEGER NOT NULL, complete INTEGER NOT NULL,
    touched INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (record_id, shard_index)
);
CREATE TABLE IF NOT EXISTS blocks (
    record_id BLOB NOT NULL, shard_index INTEGER NOT NULL, digest BLOB NOT NULL,
    PRIMARY KEY (record_id, shard_index, digest)
);
CREATE INDEX IF NOT EXISTS blocks_by_digest ON blocks (digest);
"""
# Columns added before schema versions were kept: (table, column, declaration).
_ADDED = (
    ("records", "first_seen", "INTEGER NOT NULL DEFAULT 0"),
    ("shards", "touched", "INTEGER NOT NULL DEFAULT 0"),
)


def _version_1(db: sqlite3.Connection) -> None:
    """The schema as of version 1, from nothing or from any earlier unversioned file."""
    for statement in statements(_SCHEMA):
        db.execute(statement)
    for table, column, declaration in _ADDED:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:  # names are fixed above, never input
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


# Version 2: who sent a record's first blocks (only it may drop an unrecorded
# upload), and each block's size (what orphans weigh).
_VERSION_2 = """
ALTER TABLE records ADD COLUMN uploader BLOB;
ALTER TABLE blocks ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
"""

# Version 3: an index that was ever complete is never collected as an unfinished
# transfer (a damaged one keeps its good blocks until repair replaces it).
_VERSION_3 = """
ALTER TABLE shards ADD COLUMN ever_complete INTEGER NOT NULL DEFAULT 0;
UPDATE shards SET ever_complete = 1 WHERE complete = 1;
"""

MIGRATIONS = (_version_1, _VERSION_2, _VERSION_3)
ROW_WEIGHT = 512  # what one (record, index) row and its bookkeeping weigh, in bytes


class HoldingsError(StorageError):
    """The holdings file cannot be used."""


class Holdings:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(
            path, migrations=MIGRATIONS, what="holdings database", error=HoldingsError
        )

    def close(self) -> None:
        self._db.close()

    def begin(
        self,
        record_id: bytes,
        manifest: bytes | None,
        index: int,
        now_ms: int,
        uploader: bytes | None = None,
    ) -> int:
        """Note that blocks of `index` are arriving (not complete yet); the first
        sender of a record's blocks is its uploader. Returns the weight added
        (a manifest kept now, a new index row)."""
        with self._db.transaction() as db:
            return _begin(db, record_id, manifest, index, now_ms=now_ms, uploader=uploader)

    def note_blocks(
        self, record_id: bytes, index: int, blocks: Iterable[tuple[bytes, int]], now_ms: int
    ) -> int:
        """Blocks (digest, size) of `index` now in the store (found later without a
        manifest); returns the bytes not noted before (what the record weighs more)."""
        with self._db.transaction() as db:
            return _note(db, record_id, index, blocks, now_ms)

    def arrived(
        self,
        record_id: bytes,
        manifest: bytes | None,
        index: int,
        now_ms: int,
        *,
        uploader: bytes | None,
        blocks: Iterable[tuple[bytes, int]],
    ) -> int:
        """`begin` and `note_blocks` of one batch in one transaction: one commit (one
        fsync) per batch instead of two. Returns the weight added."""
        with self._db.transaction() as db:
            added = _begin(db, record_id, manifest, index, now_ms=now_ms, uploader=uploader)
            return added + _note(db, record_id, index, blocks, now_ms)

    def finish(
        self,
        record_id: bytes,
        index: int,
        named: Sequence[tuple[bytes, int]],
        now_ms: int,
        present: Callable[[bytes], bool],
    ) -> tuple[bool, int, list[bytes]]:
        """Complete `index` in one transaction (one commit): note the `named` blocks
        (digest, size); if every one is `present` in the store, un-note the others and
        mark the index complete. Returns (complete, weight added, digests no record
        references any more: the caller deletes them from the store)."""
        with self._db.transaction() as db:
            added = _note(db, record_id, index, named, now_ms)
            if not all(present(digest) for digest, _ in named):
                return False, added, []
            unreferenced = _keep_only(db, record_id, index, {d for d, _ in named})
            _mark(db, record_id, index, True)
        return True, added, unreferenced

    def arrived_whole(
        self,
        record_id: bytes,
        manifest: bytes,
        index: int,
        now_ms: int,
        *,
        uploader: bytes | None,
        blocks: Sequence[tuple[bytes, int]],
        present: Callable[[bytes], bool],
    ) -> tuple[bool, int, list[bytes]]:
        """`arrived` and `finish` of an index whose every block came in one batch
        (`blocks` are all the manifest names): one commit. Returns as `finish`."""
        with self._db.transaction() as db:
            added = _begin(db, record_id, manifest, index, now_ms=now_ms, uploader=uploader)
            added += _note(db, record_id, index, blocks, now_ms)
            if not all(present(digest) for digest, _ in blocks):
                return False, added, []
            unreferenced = _keep_only(db, record_id, index, {d for d, _ in blocks})
            _mark(db, record_id, index, True)
        return True, added, unreferenced

    def noted(self, record_id: bytes, index: int) -> list[bytes]:
        """Digests of the blocks noted for `index`, sorted."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT digest FROM blocks WHERE record_id = ? AND shard_index = ? ORDER BY digest",
                (record_id, index),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def keep_only(self, record_id: bytes, index: int, named: Iterable[bytes]) -> list[bytes]:
        """Un-note the blocks of `index` that are not `named` (sent before the manifest
        was known, and not part of the record); returns the digests now unreferenced."""
        with self._db.transaction() as db:
            return _keep_only(db, record_id, index, set(named))

    def replace_manifest(self, record_id: bytes, manifest: bytes) -> None:
        """The held manifest was not the ledger's: keep the ledger's instead."""
        with self._db.transaction() as db:
            db.execute("UPDATE records SET manifest = ? WHERE record_id = ?", (manifest, record_id))

    def complete(self, record_id: bytes, index: int) -> None:
        """Every block of `index` is stored and fsync'd."""
        self._set_complete(record_id, index, True)

    def incomplete(self, record_id: bytes, index: int) -> None:
        """A block of `index` was lost or found corrupt: the index is no longer held whole."""
        self._set_complete(record_id, index, False)

    def _set_complete(self, record_id: bytes, index: int, complete: bool) -> None:
        with self._db.connection() as db:
            _mark(db, record_id, index, complete)

    @property
    def commits(self) -> int:
        """Transactions committed since opening (each one an fsync): tests count them."""
        return self._db.commits

    def manifest(self, record_id: bytes) -> bytes | None:
        with self._db.connection() as db:
            row = db.execute(
                "SELECT manifest FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def indices(self, record_id: bytes) -> tuple[list[int], list[int]]:
        """(complete indices, partial indices) held for `record_id`."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT shard_index, complete FROM shards WHERE record_id = ? ORDER BY shard_index",
                (record_id,),
            ).fetchall()
        return [i for i, done in rows if done], [i for i, done in rows if not done]

    def uploader(self, record_id: bytes) -> bytes | None:
        """Who sent the record's first blocks (None: unknown, or not held)."""
        with self._db.connection() as db:
            row = db.execute(
                "SELECT uploader FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def weights(self) -> tuple[dict[bytes, int], dict[bytes, int]]:
        """Bytes of blocks noted per record, in all and in indices not complete."""
        with self._db.connection() as db:
            whole = db.execute(
                "SELECT record_id, SUM(size) FROM blocks GROUP BY record_id"
            ).fetchall()
            partial = db.execute(
                "SELECT b.record_id, SUM(b.size) FROM blocks b JOIN shards s"
                " ON s.record_id = b.record_id AND s.shard_index = b.shard_index"
                " WHERE s.complete = 0 GROUP BY b.record_id"
            ).fetchall()
        return (
            {bytes(record): int(size) for record, size in whole},
            {bytes(record): int(size) for record, size in partial},
        )

    def held_blocks_after(
        self, cursor: int, limit: int
    ) -> list[tuple[int, bytes, int, bytes, int]]:
        """(position, record, index, digest, size) of blocks of complete indices, in
        position order after `cursor`: a scrub walks them a few at a time."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT b.rowid, b.record_id, b.shard_index, b.digest, b.size FROM blocks b"
                " JOIN shards s ON s.record_id = b.record_id AND s.shard_index = b.shard_index"
                " WHERE s.complete = 1 AND b.rowid > ? ORDER BY b.rowid LIMIT ?",
                (cursor, limit),
            ).fetchall()
        return [
            (position, bytes(record), index, bytes(digest), size)
            for position, record, index, digest, size in rows
        ]

    def first_noted(self, digests: Iterable[bytes], *, wait: bool = True) -> dict[bytes, bytes]:
        """For each digest noted here, the record that noted it first.

        Blocks are ciphertext under a random key per record, so two records
        never share one honestly: a later record naming an earlier record's
        blocks (a manifest anyone could write) is not served them. `wait=False`:
        DatabaseBusy rather than wait for another thread's transaction.
        """
        wanted = list(dict.fromkeys(digests))
        first: dict[bytes, bytes] = {}
        with self._db.connection(wait=wait) as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))  # only placeholders, never input
                rows = db.execute(
                    f"SELECT digest, record_id FROM blocks WHERE digest IN ({marks})"
                    " ORDER BY rowid",
                    chunk,
                )
                for digest, record_id in rows:
                    first.setdefault(bytes(digest), bytes(record_id))
        return first

    def records(self) -> list[bytes]:
        with self._db.connection() as db:
            rows = db.execute("SELECT record_id FROM records ORDER BY record_id").fetchall()
        return [bytes(row[0]) for row in rows]

    def seen_before(self, before_ms: int) -> list[bytes]:
        """Records whose first block arrived before `before_ms`."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT record_id FROM records WHERE first_seen < ? ORDER BY record_id",
                (before_ms,),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def idle_before(self, before_ms: int) -> list[bytes]:
        """Records no block of which arrived since `before_ms` (by any index's last)."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT record_id FROM shards GROUP BY record_id HAVING MAX(touched) < ?"
                " UNION SELECT record_id FROM records r WHERE NOT EXISTS"
                " (SELECT 1 FROM shards s WHERE s.record_id = r.record_id)"
                " ORDER BY record_id",
                (before_ms,),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def pending_weights(self) -> list[tuple[bytes, bytes | None, int]]:
        """(record, uploader, weight) of every record held (see the module doc)."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT r.record_id, r.uploader, IFNULL(LENGTH(r.manifest), 0)"
                " + IFNULL((SELECT SUM(size) FROM blocks b WHERE b.record_id = r.record_id), 0)"
                " + ? * (SELECT COUNT(*) FROM shards s WHERE s.record_id = r.record_id)"
                " FROM records r ORDER BY r.record_id",
                (ROW_WEIGHT,),
            ).fetchall()
        return [
            (bytes(record), None if uploader is None else bytes(uploader), int(weight))
            for record, uploader, weight in rows
        ]

    def partial_before(self, before_ms: int) -> list[tuple[bytes, int]]:
        """(record, index) never completed, no block of which arrived since `before_ms`:
        a transfer to this node that was given up (a demoted index is not one)."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT record_id, shard_index FROM shards"
                " WHERE complete = 0 AND ever_complete = 0 AND touched < ?"
                " ORDER BY record_id, shard_index",
                (before_ms,),
            ).fetchall()
        return [(bytes(record), index) for record, index in rows]

    def remove(self, record_id: bytes) -> list[bytes]:
        """Forget a record; returns the digests of its blocks no other record holds."""
        return self._forget(record_id, None)

    def remove_index(self, record_id: bytes, index: int) -> list[bytes]:
        """Forget one shard index of a record; returns the digests now unreferenced."""
        return self._forget(record_id, index)

    def _forget(self, record_id: bytes, index: int | None) -> list[bytes]:
        where, args = (
            ("record_id = ?", (record_id,))
            if index is None
            else ("record_id = ? AND shard_index = ?", (record_id, index))
        )
        with self._db.transaction() as db:
            digests = [
                bytes(row[0])
                for row in db.execute(f"SELECT digest FROM blocks WHERE {where}", args)
            ]
            db.execute(f"DELETE FROM blocks WHERE {where}", args)  # fixed clauses
            db.execute(f"DELETE FROM shards WHERE {where}", args)
            if index is None:
                db.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
            return [
                digest
                for digest in dict.fromkeys(digests)
                if db.execute("SELECT 1 FROM blocks WHERE digest = ? LIMIT 1", (digest,)).fetchone()
                is None
            ]


def _begin(
    db: sqlite3.Connection,
    record_id: bytes,
    manifest: bytes | None,
    index: int,
    *,
    now_ms: int,
    uploader: bytes | None,
) -> int:
    added = 0
    inserted = db.execute(
        "INSERT OR IGNORE INTO records (record_id, manifest, first_seen, uploader)"
        " VALUES (?, ?, ?, ?)",
        (record_id, manifest, now_ms, uploader),
    ).rowcount
    if manifest is not None and not inserted:
        inserted = db.execute(
            "UPDATE records SET manifest = ? WHERE record_id = ? AND manifest IS NULL",
            (manifest, record_id),
        ).rowcount
    if manifest is not None and inserted:
        added += len(manifest)  # kept now
    if db.execute(
        "INSERT OR IGNORE INTO shards (record_id, shard_index, complete, touched)"
        " VALUES (?, ?, 0, ?)",
        (record_id, index, now_ms),
    ).rowcount:
        added += ROW_WEIGHT
    return added


def _note(
    db: sqlite3.Connection,
    record_id: bytes,
    index: int,
    blocks: Iterable[tuple[bytes, int]],
    now_ms: int,
) -> int:
    added = 0
    for digest, size in blocks:
        added += (
            size
            * db.execute(
                "INSERT OR IGNORE INTO blocks (record_id, shard_index, digest, size)"
                " VALUES (?, ?, ?, ?)",
                (record_id, index, digest, size),
            ).rowcount
        )
    db.execute(
        "UPDATE shards SET touched = ? WHERE record_id = ? AND shard_index = ?",
        (now_ms, record_id, index),
    )
    return added


def _keep_only(
    db: sqlite3.Connection, record_id: bytes, index: int, wanted: Set[bytes]
) -> list[bytes]:
    stray = [
        bytes(row[0])
        for row in db.execute(
            "SELECT digest FROM blocks WHERE record_id = ? AND shard_index = ?",
            (record_id, index),
        )
        if bytes(row[0]) not in wanted
    ]
    for digest in stray:
        db.execute(
            "DELETE FROM blocks WHERE record_id = ? AND shard_index = ? AND digest = ?",
            (record_id, index, digest),
        )
    return [
        digest
        for digest in stray
        if db.execute("SELECT 1 FROM blocks WHERE digest = ? LIMIT 1", (digest,)).fetchone() is None
    ]


def _mark(db: sqlite3.Connection, record_id: bytes, index: int, complete: bool) -> None:
    db.execute(
        "UPDATE shards SET complete = ?, ever_complete = MAX(ever_complete, ?)"
        " WHERE record_id = ? AND shard_index = ?",
        (int(complete), int(complete), record_id, index),
    )
