from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storage.store.ledger_db import (
    DerivedGrant,
    DerivedRecord,
    DerivedState,
    LedgerDB,
    LedgerDBError,
    StoredEntry,
)

REPO = Path(__file__).resolve().parents[2]


def entry(seq: int, author: bytes = b"a" * 32) -> StoredEntry:
    return StoredEntry(hashlib.sha256(author + bytes([seq])).digest(), author, seq, b"raw %d" % seq)


def test_append_load_heads_and_derived_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    record = DerivedRecord(b"r" * 32, b"o" * 32, b"m" * 32, 10, 2, 3, 99)
    grant = DerivedGrant(b"r" * 32, b"g" * 32, 0)
    with LedgerDB(path) as db:
        db.append([entry(2), entry(1)], DerivedState(b"d" * 32, 2, [record], [grant]))
        db.append([entry(1)], DerivedState(b"e" * 32, 2, [record], [grant]))  # duplicate ignored
        assert db.load() == [b"raw 2", b"raw 1"]  # the order stored: the order accepted
        assert db.derived_digest() == (b"e" * 32, 2)
        db.append([entry(1, b"z" * 32), entry(5, b"z" * 32)], DerivedState(b"f" * 32, 4, [record]))
        assert db.heads() == {b"a" * 32: (2, 2), b"z" * 32: (5, 2)}
    with LedgerDB(path) as again:  # survives reopening
        assert again.entry_count() == 4
        assert again.derived_digest() == (b"f" * 32, 4)
        assert again.derived_records() == [record] and again.derived_grants() == []
        again.replace_derived(DerivedState(b"g" * 32, 4))
        assert again.derived_records() == [] and again.derived_digest() == (b"g" * 32, 4)
        assert again.integrity_ok()


def test_a_failed_batch_leaves_nothing(tmp_path: Path) -> None:
    with LedgerDB(tmp_path / "ledger.sqlite") as db:
        db.append([entry(1)], DerivedState(b"d" * 32, 1))
        bad = DerivedState(
            b"x" * 32, 3, [DerivedRecord(b"r" * 32, b"o" * 32, b"m" * 32, 1, 1, 1, 1)] * 2
        )
        with pytest.raises(Exception, match="UNIQUE"):
            db.append([entry(2), entry(3)], bad)  # duplicate record rows: the batch fails
        assert db.entry_count() == 1 and db.derived_digest() == (b"d" * 32, 1)


def test_not_a_ledger_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerDBError, match="not a usable ledger database"):
        LedgerDB(path)


def test_sigkill_mid_batch_leaves_entries_and_state_in_agreement(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    for kill_after in (3, 1, 7):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.storage.ledger_writer", str(path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        acknowledged = 0
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= kill_after * 10:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with LedgerDB(path) as db:
            assert db.integrity_ok()
            count = db.entry_count()
            assert count >= acknowledged and count % 10 == 0  # whole batches only
            stored = db.derived_digest()
            assert stored is not None and stored[1] == count  # state matches the entries
            assert len(db.derived_records()) == count // 10
