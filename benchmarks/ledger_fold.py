"""The put's ledger step on a large ledger: incremental state against the old refold.

    python -m benchmarks.ledger_fold [--sizes 1000 100000 1000000] [--puts 200]
                                     [--authors 2000] [--jobs 2] [--seed 1] [--json]

Builds a ledger of many authors' feeds (records, each with one to three
grants, some revokes, tombstones and attestations by grantees), signed in
`--jobs` worker processes, and grows one LedgerService (with its SQLite file
in a temporary directory, synchronous=FULL as in the daemon) to each size in
turn. At each size it times `--puts` puts' ledger steps: `append_all` of one
record entry and two grants, i.e. the rules check, ingest, the incremental
state update and the SQLite commit of the entries and the changed derived
rows. It prints the median and p90 per size and, for comparison, what the
step cost before the state was kept incrementally: one full `fold` of the
ledger (the old step folded twice, once in the rules check and once for the
state) and one full rewrite of the derived tables. `--json` ends with the
figures; the target is `median_ms` under 20 at 1,000,000 entries.
Every run with the same arguments builds the same ledger.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from benchmarks.harness import emit_json, parser, print_table
from node.ledger.service import LedgerService, _delta, _derived
from protocol.ledger.book import IngestResult
from protocol.ledger.entries import (
    AttestBody,
    Body,
    Entry,
    GrantBody,
    RecordBody,
    RevokeBody,
    TombstoneBody,
    derive_record_id,
    sign_entry,
)
from protocol.ledger.state import fold
from storage.store.ledger_db import LedgerDB, StoredEntry

BASE_MS = 1_700_000_000_000
STEP_MS = 60_000  # one entry a minute per author: well inside the feed rate limits
FILL_CHUNK = 50_000


def _key(seed: int, label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(random.Random(f"{seed} {label}").randbytes(32))


def build_feed(seed: int, author: int, count: int, people: int) -> list[Entry]:
    """One author's feed of `count` entries (in a worker process)."""
    rng = random.Random(f"{seed} feed {author}")
    signer = _key(seed, f"author {author}")
    owner = bytes(signer.verify_key)
    entries: list[Entry] = []
    records: list[bytes] = []
    while len(entries) < count:
        roll = rng.random()
        body: Body
        if roll < 0.3 or not records:
            nonce = rng.randbytes(16)
            records.append(derive_record_id(owner, nonce))
            body = RecordBody(records[-1], nonce, rng.randbytes(32), rng.randrange(1 << 20), 4, 8,
                              owner)  # fmt: skip
        elif roll < 0.9:
            grantee = bytes(_key(seed, f"person {rng.randrange(people)}").verify_key)
            body = GrantBody(rng.choice(records), grantee, rng.randbytes(80), 0)
        elif roll < 0.97:
            grantee = bytes(_key(seed, f"person {rng.randrange(people)}").verify_key)
            body = RevokeBody(rng.choice(records), grantee)
        else:
            body = TombstoneBody(records.pop(rng.randrange(len(records))))
        prev = entries[-1] if entries else None
        seq, prev_hash = (prev.seq + 1, prev.hash) if prev else (1, b"")
        entries.append(sign_entry(signer, seq, prev_hash, BASE_MS + seq * STEP_MS, body))
    return entries


def build_attests(seed: int, person: int, targets: list[tuple[bytes, bytes]]) -> list[Entry]:
    """A person's feed attesting records (some never granted to it: rejected, as in life)."""
    signer = _key(seed, f"person {person}")
    entries: list[Entry] = []
    for record_id, manifest in targets:
        prev = entries[-1] if entries else None
        seq, prev_hash = (prev.seq + 1, prev.hash) if prev else (1, b"")
        body = AttestBody(record_id, manifest)
        entries.append(sign_entry(signer, seq, prev_hash, BASE_MS + seq * STEP_MS, body))
    return entries


def build_ledger(size: int, authors: int, jobs: int, seed: int) -> list[Entry]:
    """`size` entries, interleaved so that any prefix holds whole feed prefixes."""
    people = max(4, authors // 4)
    per_author = -(-size * 19 // 20 // authors)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        calls = ([seed] * authors, range(authors), [per_author] * authors, [people] * authors)
        feeds = list(pool.map(build_feed, *calls, chunksize=16))
        rng = random.Random(seed)
        records = [e for feed in feeds for e in feed if isinstance(e.body, RecordBody)]
        wanted = max(0, size - sum(len(f) for f in feeds))
        targets: list[list[tuple[bytes, bytes]]] = [[] for _ in range(people)]
        for _ in range(wanted):
            record = rng.choice(records).body
            assert isinstance(record, RecordBody)
            targets[rng.randrange(people)].append((record.record_id, record.manifest_hash))
        feeds += pool.map(build_attests, [seed] * people, range(people), targets, chunksize=16)
    interleaved = [feed[i] for i in range(max(map(len, feeds))) for feed in feeds if i < len(feed)]
    return interleaved[:size]


class Clock:
    """Milliseconds that move a second per reading (the writer's own feed stays in its limits)."""

    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def fill(service: LedgerService, entries: Sequence[Entry]) -> None:
    """Add already signed and verified entries the way ingest does, in big batches."""
    book, db = service.book, service.db
    assert db is not None
    for start in range(0, len(entries), FILL_CHUNK):
        result = IngestResult()
        for entry in entries[start : start + FILL_CHUNK]:
            book._ingest_one(entry, result)  # the raw bytes were verified when signed
        service.live.apply(result.accepted, flagged={a: book.flagged[a] for a in result.forked})
        rows = [StoredEntry(e.hash, e.author, e.seq, e.raw) for e in result.accepted]
        db.append(rows, _delta(service.state(), service.live.changes(), len(book)))


async def time_puts(service: LedgerService, puts: int, rng: random.Random) -> list[float]:
    owner = service.public_key
    samples = []
    for _ in range(puts):
        nonce = rng.randbytes(16)
        record_id = derive_record_id(owner, nonce)
        bodies: list[Body] = [RecordBody(record_id, nonce, rng.randbytes(32), 4096, 4, 8, owner)]
        bodies += [GrantBody(record_id, rng.randbytes(32), rng.randbytes(80), 0) for _ in "ab"]
        started = time.perf_counter()
        await service.append_all(bodies)
        samples.append(time.perf_counter() - started)
    return samples


def old_step(service: LedgerService, db: LedgerDB) -> tuple[float, float]:
    """Seconds of one full fold and of one full derived-table rewrite (the step before)."""
    started = time.perf_counter()
    state = fold(service.book.entries(), service.book.flagged)
    folded = time.perf_counter() - started
    started = time.perf_counter()
    db.replace_derived(_derived(state, len(service.book)))
    return folded, time.perf_counter() - started


def run(
    sizes: Sequence[int], puts: int, authors: int, jobs: int, seed: int
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    ledger = build_ledger(max(sizes), authors, jobs, seed)
    print(f"built {len(ledger):,} entries in {time.perf_counter() - started:.1f} s")
    rng = random.Random(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LedgerDB(Path(tmp) / "ledger.sqlite") as db:
        service = LedgerService(identity=_key(seed, "writer"), clock_ms=Clock(BASE_MS + 10**10),
                                db=db)  # fmt: skip
        held = 0
        for size in sorted(sizes):
            started = time.perf_counter()
            fill(service, ledger[held:size])
            filled, added, held = time.perf_counter() - started, size - held, size
            samples = sorted(trio.run(time_puts, service, puts, rng))
            folded, rewrite = old_step(service, db)
            rows.append({
                "entries": len(service.book),
                "median_ms": round(statistics.median(samples) * 1000, 2),
                "p90_ms": round(samples[int(0.9 * (len(samples) - 1))] * 1000, 2),
                "old_fold_ms": round(folded * 1000, 1),
                "old_rewrite_ms": round(rewrite * 1000, 1),
                "old_step_ms": round((2 * folded + rewrite) * 1000, 1),
                "fill_entries_per_s": round(added / max(filled, 1e-9)),
            })  # fmt: skip
            print(f"{size:,} entries: median {rows[-1]['median_ms']} ms", flush=True)
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    p.add_argument("--puts", type=int, default=200)
    p.add_argument("--authors", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    rows = run(args.sizes, args.puts, args.authors, args.jobs, args.seed)
    headers = list(rows[0])
    print_table(headers, [[row[h] for h in headers] for row in rows])
    largest = rows[-1]
    figures = {"sizes": rows, "median_ms": largest["median_ms"], "p90_ms": largest["p90_ms"],
               "old_step_ms": largest["old_step_ms"], "entries": largest["entries"]}  # fmt: skip
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
