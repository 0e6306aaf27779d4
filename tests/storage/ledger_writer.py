"""Child process for the ledger crash test: appends batches until killed.

Each batch is 10 entries of one feed plus a derived state whose entry count
is the new total; it prints the total after each committed batch.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from storage.store.ledger_db import DerivedRecord, DerivedState, LedgerDB, StoredEntry

BATCH = 10


def main() -> None:
    db = LedgerDB(Path(sys.argv[1]))
    author = b"A" * 32
    total = db.entry_count()
    for _ in range(5000):  # stops by itself
        entries = []
        for seq in range(total + 1, total + BATCH + 1):
            raw = hashlib.sha256(seq.to_bytes(8, "big")).digest() * 64
            entries.append(StoredEntry(hashlib.sha256(raw).digest(), author, seq, raw))
        total += BATCH
        records = [
            DerivedRecord(hashlib.sha256(b"%d" % i).digest(), author, b"m" * 32, i, 1, 1, i)
            for i in range(total // BATCH)
        ]
        db.append(entries, DerivedState(total.to_bytes(32, "big"), total, records))
        print(total, flush=True)


if __name__ == "__main__":
    main()
