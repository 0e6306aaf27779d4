"""One way to keep a node's SQLite files: open, pragmas, transactions, migrations.

Every file is opened in WAL mode, with synchronous=FULL (a committed
transaction survives power loss) unless its owner rebuilds what a power cut
may take and asks for NORMAL (the commits still land in order and whole,
only the last ones may be lost: the shard pack index, see
storage/store/packs.py), shared between the trio thread and worker threads
under one lock. `transaction()` commits what its block did or rolls
all of it back when the block raises, so a failed statement never leaves the
connection inside a transaction. The schema is versioned by `PRAGMA
user_version`: each migration runs in its own transaction with the version
bump, so a crash mid-upgrade leaves the previous version intact, and a file
written by a newer medvault is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# A migration: SQL statements, or a function of the connection (for upgrades
# that must look at what is there first). Run inside a transaction.
Migration = str | Callable[[sqlite3.Connection], None]


class DatabaseBusy(Exception):
    """The connection is in use by another thread (`connection(wait=False)`)."""


class Database:
    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Migration],
        what: str,
        error: type[Exception],
        synchronous: str = "FULL",
    ) -> None:
        """Open (creating if need be) and bring the schema up to date.

        `what` names the file's purpose in errors ("ledger database"), raised
        as `error`. `synchronous`: FULL, or NORMAL for a file whose last commits
        may be lost to a power cut because its owner rebuilds them.
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous is FULL or NORMAL, not {synchronous!r}")
        self.path = path
        self.lock = threading.Lock()
        self.commits = 0  # transactions committed (each an fsync under synchronous=FULL)
        self._error = error
        self._what = what
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            raise error(f"{path} is not a usable {what} ({exc})") from None

    @property
    def version(self) -> int:
        with self.lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        current = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if current > len(migrations):
            raise self._error(
                f"{self.path} is a {self._what} of schema version {current}, written by a"
                f" newer medvault; this one knows versions up to {len(migrations)}"
            )
        for version, migration in enumerate(migrations[current:], start=current + 1):
            with self.transaction() as db:
                if isinstance(migration, str):
                    for statement in statements(migration):
                        db.execute(statement)
                else:
                    migration(db)
                db.execute(f"PRAGMA user_version = {int(version)}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside BEGIN IMMEDIATE ... COMMIT; ROLLBACK if the block raises."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL, IOERR, NOMEM),
                # and a failed COMMIT may leave the transaction open: end it either way,
                # and let the first error through (not "no transaction is active").
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self.commits += 1

    @contextmanager
    def connection(self, *, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection for reads or one autocommitted statement, under the lock.
        `wait=False`: DatabaseBusy at once if another thread holds it (a commit's fsync
        may take it for milliseconds: an event loop's caller goes elsewhere)."""
        if not self.lock.acquire(blocking=wait):
            raise DatabaseBusy(f"the {self._what} is in use")
        try:
            yield self._db
        finally:
            self.lock.release()

    def checkpoint(self) -> None:
        """Every commit so far made durable, whatever `synchronous` is: a WAL checkpoint
        fsyncs the log before copying it into the file and the file after."""
        with self.lock:
            busy = self._db.execute("PRAGMA wal_checkpoint(FULL)").fetchone()[0]
        if busy:
            raise self._error(f"{self.path}: the {self._what} could not be checkpointed")

    def close(self) -> None:
        with self.lock:
            self._db.close()


def statements(script: str) -> list[str]:
    """The statements of a migration script (executescript would commit on its own)."""
    out, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:60]!r}")
    return out
