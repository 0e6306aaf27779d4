"""What shards of which records this node holds (SQLite beside the shard files).

The blocks themselves live in the content-addressed shard store; this table
says which record and shard index they belong to, keeps each held record's
manifest (a holder verifies and repairs with it, without the record key), and
marks an index complete only once every segment's block of it is stored, so
a holder killed in the middle of a transfer never claims an index it lacks.
Blocks may arrive before the manifest (a streaming put knows it only at the
end): the record is then noted without one until it comes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (record_id BLOB PRIMARY KEY, manifest BLOB);
CREATE TABLE IF NOT EXISTS shards (
    record_id BLOB NOT NULL, shard_index INTEGER NOT NULL, complete INTEGER NOT NULL,
    PRIMARY KEY (record_id, shard_index)
);
"""


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
        except sqlite3.DatabaseError as exc:
            raise HoldingsError(f"{path} is not a usable holdings database ({exc})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def begin(self, record_id: bytes, manifest: bytes | None, index: int) -> None:
        """Note that blocks of `index` are arriving (not complete yet)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO records VALUES (?, ?)", (record_id, manifest))
            if manifest is not None:
                self._db.execute(
                    "UPDATE records SET manifest = ? WHERE record_id = ? AND manifest IS NULL",
                    (manifest, record_id),
                )
            self._db.execute("INSERT OR IGNORE INTO shards VALUES (?, ?, 0)", (record_id, index))
            self._db.execute("COMMIT")

    def complete(self, record_id: bytes, index: int) -> None:
        """Every block of `index` is stored and fsync'd."""
        with self._lock:
            self._db.execute(
                "UPDATE shards SET complete = 1 WHERE record_id = ? AND shard_index = ?",
                (record_id, index),
            )

    def incomplete(self, record_id: bytes, index: int) -> None:
        """A block of `index` was lost or found corrupt: the index is no longer held whole."""
        with self._lock:
            self._db.execute(
                "UPDATE shards SET complete = 0 WHERE record_id = ? AND shard_index = ?",
                (record_id, index),
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

    def remove(self, record_id: bytes) -> None:
        """Forget a record (its blocks are deleted by the caller first)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM shards WHERE record_id = ?", (record_id,))
            self._db.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
            self._db.execute("COMMIT")
