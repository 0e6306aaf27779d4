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
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

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
# Columns added after the first release: (table, column, declaration).
_ADDED = (
    ("records", "first_seen", "INTEGER NOT NULL DEFAULT 0"),
    ("shards", "touched", "INTEGER NOT NULL DEFAULT 0"),
)


class HoldingsError(Exception):
    """The holdings file cannot be used."""


class Holdings:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise HoldingsError(f"{path} is not a usable holdings database ({exc})") from None

    def _upgrade(self) -> None:
        for table, column, declaration in _ADDED:
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:  # names are fixed above, never input
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def begin(self, record_id: bytes, manifest: bytes | None, index: int, now_ms: int) -> None:
        """Note that blocks of `index` are arriving (not complete yet)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?)", (record_id, manifest, now_ms)
            )
            if manifest is not None:
                self._db.execute(
                    "UPDATE records SET manifest = ? WHERE record_id = ? AND manifest IS NULL",
                    (manifest, record_id),
                )
            self._db.execute(
                "INSERT OR IGNORE INTO shards VALUES (?, ?, 0, ?)", (record_id, index, now_ms)
            )
            self._db.execute("COMMIT")

    def note_blocks(
        self, record_id: bytes, index: int, digests: Iterable[bytes], now_ms: int
    ) -> None:
        """Blocks of `index` now in the store (found later without a manifest)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?)",
                [(record_id, index, digest) for digest in digests],
            )
            self._db.execute(
                "UPDATE shards SET touched = ? WHERE record_id = ? AND shard_index = ?",
                (now_ms, record_id, index),
            )
            self._db.execute("COMMIT")

    def complete(self, record_id: bytes, index: int) -> None:
        """Every block of `index` is stored and fsync'd."""
        self._set_complete(record_id, index, True)

    def incomplete(self, record_id: bytes, index: int) -> None:
        """A block of `index` was lost or found corrupt: the index is no longer held whole."""
        self._set_complete(record_id, index, False)

    def _set_complete(self, record_id: bytes, index: int, complete: bool) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE shards SET complete = ? WHERE record_id = ? AND shard_index = ?",
                (int(complete), record_id, index),
            )

    def manifest(self, record_id: bytes) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT manifest FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def indices(self, record_id: bytes) -> tuple[list[int], list[int]]:
        """(complete indices, partial indices) held for `record_id`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT shard_index, complete FROM shards WHERE record_id = ? ORDER BY shard_index",
                (record_id,),
            ).fetchall()
        return [i for i, done in rows if done], [i for i, done in rows if not done]

    def records(self) -> list[bytes]:
        with self._lock:
            rows = self._db.execute("SELECT record_id FROM records ORDER BY record_id").fetchall()
        return [bytes(row[0]) for row in rows]

    def seen_before(self, before_ms: int) -> list[bytes]:
        """Records whose first block arrived before `before_ms`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record_id FROM records WHERE first_seen < ? ORDER BY record_id",
                (before_ms,),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def partial_before(self, before_ms: int) -> list[tuple[bytes, int]]:
        """(record, index) not complete, no block of which arrived since `before_ms`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record_id, shard_index FROM shards WHERE complete = 0 AND touched < ?"
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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                digests = [
                    bytes(row[0])
                    for row in self._db.execute(f"SELECT digest FROM blocks WHERE {where}", args)
                ]
                self._db.execute(f"DELETE FROM blocks WHERE {where}", args)  # fixed clauses
                self._db.execute(f"DELETE FROM shards WHERE {where}", args)
                if index is None:
                    self._db.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
                free = [
                    digest
                    for digest in dict.fromkeys(digests)
                    if self._db.execute(
                        "SELECT 1 FROM blocks WHERE digest = ? LIMIT 1", (digest,)
                    ).fetchone()
                    is None
                ]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return free
