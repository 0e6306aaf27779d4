"""Reads in the ledger: access entries fold into one line per read, and what is refused."""

from __future__ import annotations

import random

import msgpack
import nacl.signing
import pytest

from protocol.ledger import access
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import AccessBody, Entry, InvalidEntry, decode_entry
from protocol.ledger.live import LiveState
from protocol.ledger.state import LedgerState, fold
from protocol.records import permit
from protocol.records.purpose import Purpose
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed

NODE = b"n" * 32


def reader(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed(f"access reader {label}"))


def statement(
    who: nacl.signing.SigningKey,
    record_id: bytes,
    read: int,
    at: int = 1_000_000,
    purpose: Purpose = Purpose.TREAT,
) -> bytes:
    read_id = read.to_bytes(permit.READ_ID_SIZE, "big")
    return permit.sign(who, record_id, NODE, at, read_id=read_id, purpose=purpose)


def log(feed: Feed, record_id: bytes, raw: bytes) -> Entry:
    return feed.write(AccessBody(record_id, raw))


def test_a_read_logged_by_its_reader_node_and_a_holder_is_one_read_with_two_loggers() -> None:
    owner, reader_node, holder = Feed("owner"), Feed("reader node"), Feed("holder")
    record_id = owner.record("r1")
    alice = reader("alice")
    first = statement(alice, record_id, 1, purpose=Purpose.ETREAT)
    later = statement(alice, record_id, 1, at=1_200_000, purpose=Purpose.ETREAT)  # same read
    log(reader_node, record_id, first)
    log(holder, record_id, later)
    state = fold([*owner.entries, *reader_node.entries, *holder.entries])
    (read,) = state.reads_of(record_id)
    assert read.reader == bytes(alice.verify_key)
    assert (read.node, read.purpose, read.issued_at_ms) == (NODE, Purpose.ETREAT, 1_000_000)
    assert read.loggers == tuple(sorted([reader_node.public, holder.public]))
    log(holder, record_id, statement(alice, record_id, 2))  # a second read: a second line
    everything = [*owner.entries, *reader_node.entries, *holder.entries]
    assert len(fold(everything).reads_of(record_id)) == 2


def test_an_access_entry_does_not_decode_with_a_forged_or_foreign_statement() -> None:
    owner, mallory = Feed("owner"), Feed("mallory")
    record_id = owner.record("r1")
    other_id = owner.record("r2")
    good = statement(reader("alice"), record_id, 1)
    fields = msgpack.unpackb(good)
    forged = msgpack.packb([*fields[:5], "HPAYMT", *fields[6:]], use_bin_type=True)
    with pytest.raises(ValueError, match="bad signature"):
        AccessBody(record_id, forged)
    with pytest.raises(ValueError, match="another record"):
        AccessBody(other_id, good)
    # Written anyway (bypassing the body's checks), the entry does not decode: refused.
    entry = log(mallory, record_id, good)
    tampered = entry.raw.replace(good, forged)
    with pytest.raises(InvalidEntry):
        decode_entry(tampered)


def test_a_read_of_an_unknown_record_waits_and_a_misdated_one_is_rejected() -> None:
    owner, holder = Feed("owner"), Feed("holder")
    record_id = owner.record("r1")
    early = log(holder, record_id, statement(reader("a"), record_id, 1, at=holder.clock + 1000))
    state = fold(holder.entries)
    assert early.hash in state.pending and not state.accesses
    assert fold([*owner.entries, *holder.entries]).reads_of(record_id)
    future = log(holder, record_id, statement(reader("a"), record_id, 2, at=holder.clock + 600_000))
    holder.clock += 2 * access.MAX_BEHIND_MS
    bad = [future, log(holder, record_id, statement(reader("a"), record_id, 3, at=0))]
    state = fold([*owner.entries, *holder.entries])
    assert {state.rejected[e.hash].split()[2] for e in bad} == {"issued", "older"}
    assert len(state.reads_of(record_id)) == 1


def test_access_entries_never_freeze_a_feed() -> None:
    """A holder logs reads of records it did not write: that is no feed violation."""
    owner, holder = Feed("owner"), Feed("holder")
    record_id = owner.record("r1")
    log(holder, record_id, statement(reader("a"), record_id, 1))
    book = LedgerBook()
    result = book.ingest([e.raw for e in [*owner.entries, *holder.entries]])
    assert len(result.accepted) == 2 and not book.flagged


def reference(entries: list[Entry], cap: int) -> dict[bytes, dict[tuple[bytes, bytes], object]]:
    """Brute force: group by (record, reader, read id), keep the latest `cap` per record."""
    state = fold(entries)
    known = set(state.records)
    groups: dict[tuple[bytes, bytes, bytes], list[tuple[Entry, permit.ReadPermit]]] = {}
    for entry in entries:
        body = entry.body
        if (
            isinstance(body, AccessBody)
            and entry.record_id in known
            and not (access.access_problem(entry))
        ):
            found = body.decoded
            groups.setdefault((entry.record_id, found.reader, found.read_id), []).append(
                (entry, found)
            )
    out: dict[bytes, dict[tuple[bytes, bytes], object]] = {}
    by_record: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
    for (record_id, who, read_id), parts in groups.items():
        issued = min(p.issued_at_ms for _, p in parts)
        by_record.setdefault(record_id, []).append((issued, who, read_id))
    for record_id, keys in by_record.items():
        for issued, who, read_id in sorted(keys)[-cap:]:
            parts = groups[(record_id, who, read_id)]
            _, first = min(parts, key=lambda p: (p[1].issued_at_ms, p[0].body.statement))  # type: ignore[union-attr]
            loggers = tuple(sorted({e.author for e, _ in parts}))
            out.setdefault(record_id, {})[(who, read_id)] = (first.node, issued, loggers)
    return out


def view(state: LedgerState) -> dict[bytes, dict[tuple[bytes, bytes], object]]:
    return {
        r: {k: (a.node, a.issued_at_ms, a.loggers) for k, a in reads.items()}
        for r, reads in state.accesses.items()
    }


@pytest.mark.parametrize("seed_value", range(8))
def test_live_equals_fold_equals_brute_force_under_the_per_record_bound(
    seed_value: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood beyond the bound keeps the latest reads, whatever the order and batching."""
    monkeypatch.setattr(access, "MAX_ACCESSES_PER_RECORD", 5)
    rng = random.Random(seed_value)
    owner = Feed("owner")
    records = [owner.record("r1"), owner.record("r2")]
    loggers = [Feed(f"logger {i}") for i in range(3)]
    readers = [reader(str(i)) for i in range(3)]
    for _ in range(40):
        feed = rng.choice(loggers)
        record_id = rng.choice(records)
        raw = statement(rng.choice(readers), record_id, rng.randrange(6),
                        at=feed.clock - rng.randrange(0, 200_000))  # fmt: skip
        log(feed, record_id, raw)
    entries = [*owner.entries, *(e for f in loggers for e in f.entries)]
    expected = reference(entries, 5)
    folded = fold(entries)
    assert view(folded) == expected
    assert all(len(reads) <= 5 for reads in folded.accesses.values())
    shuffled = entries[:]
    rng.shuffle(shuffled)
    live = LiveState()
    at = 0
    while at < len(shuffled):
        step = rng.randint(1, 6)
        live.apply(shuffled[at : at + step])
        at += step
    assert view(live.state) == expected
    assert live.state.digest() == folded.digest()
    assert live.state.recomputed_sum() == folded.recomputed_sum()
    live.apply([], removed=[e for e in entries if e.author == loggers[0].public])
    rest = [e for e in entries if e.author != loggers[0].public]
    assert view(live.state) == reference(rest, 5)
    assert live.state.digest() == fold(rest).digest()


def test_problems_names_a_misdated_access_before_it_is_written() -> None:
    owner, holder = Feed("owner"), Feed("holder")
    record_id = owner.record("r1")
    live = LiveState()
    live.apply(owner.entries)
    bad = log(holder, record_id, statement(reader("a"), record_id, 1, at=holder.clock + 3_600_000))
    good = log(holder, record_id, statement(reader("a"), record_id, 2, at=holder.clock))
    problems = live.problems([bad, good])
    assert list(problems) == [bad.hash]
