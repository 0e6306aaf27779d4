"""The SQLite helper both node databases share: transactions and versioned migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.store.holdings import Holdings, HoldingsError
from storage.store.ledger_db import DerivedState, LedgerDB, LedgerDBError, StoredEntry
from storage.store.sqlite import Database

R1 = b"\x01" * 32
A, B = b"a" * 32, b"b" * 32


class Broken(Exception):
    pass


def open_db(path: Path, *migrations: str) -> Database:
    return Database(path, migrations=migrations, what="test database", error=Broken)


def test_a_failing_block_rolls_back_and_leaves_the_connection_usable(tmp_path: Path) -> None:
    db = open_db(tmp_path / "t.sqlite", "CREATE TABLE t (x INTEGER NOT NULL);")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (NULL)")
    with db.transaction() as conn:  # no "transaction within a transaction"
        conn.execute("INSERT INTO t VALUES (2)")
    with db.connection() as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_migrations_run_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    first = open_db(path, "CREATE TABLE t (x INTEGER);")
    assert first.version == 1
    first.close()
    second = open_db(path, "CREATE TABLE t (x INTEGER);", "ALTER TABLE t ADD COLUMN y INTEGER;")
    assert second.version == 2
    with second.connection() as conn:
        assert [row[1] for row in conn.execute("PRAGMA table_info(t)")] == ["x", "y"]


def test_a_failing_migration_keeps_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    open_db(path, "CREATE TABLE t (x INTEGER);").close()
    with pytest.raises(Broken, match="not a usable test database"):
        open_db(path, "CREATE TABLE t (x INTEGER);", "CREATE TABLE u (a); CREATE TABLE t (b);")
    again = open_db(path, "CREATE TABLE t (x INTEGER);")
    assert again.version == 1
    with again.connection() as conn:  # the half of version 2 that ran was rolled back
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchall() == []


def test_a_file_from_a_newer_medvault_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    open_db(path, "CREATE TABLE t (x);", "CREATE TABLE u (x);").close()
    with pytest.raises(Broken, match="schema version 2, written by a newer medvault"):
        open_db(path, "CREATE TABLE t (x);")


def test_a_failed_holdings_statement_leaves_the_store_usable(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=1)
    with pytest.raises(sqlite3.Error):
        holdings.note_blocks(R1, 0, [(A, 1), (object(), 1)], now_ms=2)  # type: ignore[list-item]
    holdings.note_blocks(R1, 0, [(B, 1)], now_ms=3)  # the store still works...
    holdings.begin(R1, None, 1, now_ms=4)
    assert holdings.remove_index(R1, 0) == [B]  # ...and A of the failed batch was never noted
    assert holdings.indices(R1) == ([], [1])


def test_an_unversioned_holdings_file_from_an_early_release_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE records (record_id BLOB PRIMARY KEY, manifest BLOB);
        CREATE TABLE shards (record_id BLOB NOT NULL, shard_index INTEGER NOT NULL,
            complete INTEGER NOT NULL, PRIMARY KEY (record_id, shard_index));
        INSERT INTO records VALUES (x'01', x'aa');
        INSERT INTO shards VALUES (x'01', 3, 1);
        """
    )
    old.close()
    holdings = Holdings(path)
    assert holdings.indices(b"\x01") == ([3], [])
    assert holdings.manifest(b"\x01") == b"\xaa"
    assert holdings.seen_before(1) == [b"\x01"]  # first_seen added with its default
    assert holdings._db.version == 3


def test_both_databases_name_the_file_they_cannot_use(tmp_path: Path) -> None:
    for name, opener, error in (
        ("h.sqlite", Holdings, HoldingsError),
        ("l.sqlite", LedgerDB, LedgerDBError),
    ):
        path = tmp_path / name
        path.write_bytes(b"not a database" * 200)
        with pytest.raises(error, match=str(path)):
            opener(path)


def test_a_ledger_written_before_versions_were_kept_opens(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with LedgerDB(path) as db:
        db.append([StoredEntry(b"h" * 32, b"a" * 32, 1, b"raw")], DerivedState(b"d" * 32, 1))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")  # as the first release left it
    conn.commit()
    conn.close()
    with LedgerDB(path) as again:
        assert again.load() == [b"raw"]
