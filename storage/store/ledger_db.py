"""The ledger on disk: SQLite in WAL mode, one transaction per batch.

Entries are stored as opaque rows (hash, author, seq, bytes): this layer does
not interpret them. Beside them sit derived tables (records, grants,
tombstones, flagged authors) and the digest and entry count of the state they
were derived from, written in the same transaction as the entries, so a
process killed at any instant leaves entries and derived state that agree.
If they ever disagree (an older version, a hand edit), the node rebuilds the
derived tables from the entries (`replace_derived`). synchronous=FULL: a
committed batch survives power loss.

A batch carries either the whole derived state (`DerivedState`, rewritten) or
only what changed (`DerivedDelta`: rows upserted or deleted), so a node with a
million entries writes a handful of rows per put, not its whole state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from storage.errors import StorageError
from storage.store.sqlite import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    hash BLOB PRIMARY KEY, author BLOB NOT NULL, seq INTEGER NOT NULL, raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_feed ON entries (author, seq);
CREATE TABLE IF NOT EXISTS records (
    record_id BLOB PRIMARY KEY, owner BLOB NOT NULL, manifest_hash BLOB NOT NULL,
    size INTEGER NOT NULL, k INTEGER NOT NULL, n INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    record_id BLOB NOT NULL, grantee BLOB NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (record_id, grantee)
);
CREATE TABLE IF NOT EXISTS tombstones (record_id BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS flagged (author BLOB PRIMARY KEY);
"""
# Version 1 is the schema above (IF NOT EXISTS: files written before versions
# were kept, which hold exactly these tables, upgrade in place).
MIGRATIONS = (_SCHEMA,)


class LedgerDBError(StorageError):
    """The ledger file cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class StoredEntry:
    hash: bytes
    author: bytes
    seq: int
    raw: bytes


@dataclass(frozen=True)
class DerivedRecord:
    record_id: bytes
    owner: bytes
    manifest_hash: bytes
    size: int
    k: int
    n: int
    created_at: int


@dataclass(frozen=True)
class DerivedGrant:
    record_id: bytes
    grantee: bytes
    expires_at: int


@dataclass(frozen=True)
class DerivedState:
    digest: bytes
    entry_count: int
    records: Sequence[DerivedRecord] = field(default_factory=tuple)
    grants: Sequence[DerivedGrant] = field(default_factory=tuple)
    tombstones: Sequence[bytes] = field(default_factory=tuple)
    flagged: Sequence[bytes] = field(default_factory=tuple)


@dataclass(frozen=True)
class DerivedDelta:
    """The derived rows a batch changed: upserts, deletions, and the new digest and count."""

    digest: bytes
    entry_count: int
    records: Sequence[DerivedRecord] = field(default_factory=tuple)
    records_gone: Sequence[bytes] = field(default_factory=tuple)
    grants: Sequence[DerivedGrant] = field(default_factory=tuple)
    grants_gone: Sequence[tuple[bytes, bytes]] = field(default_factory=tuple)
    tombstones: Sequence[bytes] = field(default_factory=tuple)
    tombstones_gone: Sequence[bytes] = field(default_factory=tuple)
    flagged: Sequence[bytes] = field(default_factory=tuple)
    flagged_gone: Sequence[bytes] = field(default_factory=tuple)


class LedgerDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(
            path, migrations=MIGRATIONS, what="ledger database", error=LedgerDBError
        )

    def __enter__(self) -> LedgerDB:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> bytes | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def append(
        self,
        entries: Sequence[StoredEntry],
        derived: DerivedState | DerivedDelta,
        dropped: Sequence[bytes] = (),
    ) -> None:
        """Add a batch of entries, drop `dropped` ones, and write the state they lead to,
        atomically (the whole state, or only its changed rows)."""
        with self._db.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?)",
                [(e.hash, e.author, e.seq, e.raw) for e in entries],
            )
            db.executemany("DELETE FROM entries WHERE hash = ?", [(h,) for h in dropped])
            if isinstance(derived, DerivedDelta):
                _write_delta(db, derived)
            else:
                _write_derived(db, derived)

    def replace_derived(self, derived: DerivedState) -> None:
        """Rewrite the derived tables (after a rebuild from the entries)."""
        with self._db.transaction() as db:
            _write_derived(db, derived)

    def load(self) -> list[bytes]:
        """Every stored entry, in the order they were stored."""
        return [raw for _, raw in self.load_rows()]

    def load_rows(self) -> list[tuple[bytes, bytes]]:
        """(stored hash, raw entry) of every row, in the order they were stored: the order
        the node accepted them (each batch is stored in its acceptance order, and a feed's
        entries are accepted in seq order), which wallet cursors count in."""
        with self._db.connection() as db:
            rows = db.execute("SELECT hash, raw FROM entries ORDER BY rowid").fetchall()
        return [(bytes(row[0]), bytes(row[1])) for row in rows]

    def delete_entries(self, hashes: Sequence[bytes]) -> None:
        """Drop rows found corrupt (a good copy from a peer is stored again later)."""
        with self._db.transaction() as db:
            db.executemany("DELETE FROM entries WHERE hash = ?", [(h,) for h in hashes])

    def derived_content(self) -> DerivedState:
        """The derived tables as stored, to compare with a fresh fold of the entries."""
        stored = self.derived_digest()
        with self._db.connection() as db:
            tombstones = [bytes(r[0]) for r in db.execute("SELECT record_id FROM tombstones")]
            flagged = [bytes(r[0]) for r in db.execute("SELECT author FROM flagged")]
        return DerivedState(
            digest=b"" if stored is None else stored[0],
            entry_count=-1 if stored is None else stored[1],
            records=self.derived_records(),
            grants=self.derived_grants(),
            tombstones=sorted(tombstones),
            flagged=sorted(flagged),
        )

    def heads(self) -> dict[bytes, tuple[int, int]]:
        """Per author: (highest seq, entries held), from the (author, seq) index."""
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT author, MAX(seq), COUNT(*) FROM entries GROUP BY author"
            ).fetchall()
        return {bytes(author): (top, count) for author, top, count in rows}

    def entry_count(self) -> int:
        with self._db.connection() as db:
            count: int = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return count

    def derived_digest(self) -> tuple[bytes, int] | None:
        """(digest, entry count) of the stored derived state, if any."""
        with self._db.connection() as db:
            digest, count = self._meta(db, "digest"), self._meta(db, "entry_count")
        if digest is None or count is None:
            return None
        return digest, int.from_bytes(count, "big")

    def derived_records(self) -> list[DerivedRecord]:
        with self._db.connection() as db:
            rows = db.execute("SELECT * FROM records ORDER BY record_id").fetchall()
        return [DerivedRecord(bytes(r[0]), bytes(r[1]), bytes(r[2]), *r[3:]) for r in rows]

    def derived_grants(self) -> list[DerivedGrant]:
        with self._db.connection() as db:
            rows = db.execute("SELECT * FROM grants ORDER BY record_id, grantee").fetchall()
        return [DerivedGrant(bytes(r[0]), bytes(r[1]), r[2]) for r in rows]

    def integrity_ok(self) -> bool:
        with self._db.connection() as db:
            return bool(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")


def _write_derived(db: sqlite3.Connection, derived: DerivedState) -> None:
    for table in ("records", "grants", "tombstones", "flagged"):
        db.execute(f"DELETE FROM {table}")  # table names are fixed, never input
    _insert_rows(db, derived)


def _write_delta(db: sqlite3.Connection, delta: DerivedDelta) -> None:
    gone_records = [(r,) for r in (*delta.records_gone, *(r.record_id for r in delta.records))]
    db.executemany("DELETE FROM records WHERE record_id = ?", gone_records)
    gone_grants = [*delta.grants_gone, *((g.record_id, g.grantee) for g in delta.grants)]
    db.executemany("DELETE FROM grants WHERE record_id = ? AND grantee = ?", gone_grants)
    db.executemany(
        "DELETE FROM tombstones WHERE record_id = ?", [(t,) for t in delta.tombstones_gone]
    )
    db.executemany("DELETE FROM flagged WHERE author = ?", [(a,) for a in delta.flagged_gone])
    upserts = DerivedState(delta.digest, delta.entry_count, delta.records, delta.grants)
    _insert_rows(db, upserts)
    db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(t,) for t in delta.tombstones])
    db.executemany("INSERT OR IGNORE INTO flagged VALUES (?)", [(a,) for a in delta.flagged])


def _insert_rows(db: sqlite3.Connection, derived: DerivedState) -> None:
    db.executemany(
        "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (r.record_id, r.owner, r.manifest_hash, r.size, r.k, r.n, r.created_at)
            for r in derived.records
        ],
    )
    db.executemany(
        "INSERT INTO grants VALUES (?, ?, ?)",
        [(g.record_id, g.grantee, g.expires_at) for g in derived.grants],
    )
    db.executemany("INSERT INTO tombstones VALUES (?)", [(t,) for t in derived.tombstones])
    db.executemany("INSERT INTO flagged VALUES (?)", [(a,) for a in derived.flagged])
    db.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [("digest", derived.digest), ("entry_count", derived.entry_count.to_bytes(8, "big"))],
    )
