"""The set of accepted ledger entries, one chained feed per author.

Ingest rules, in order: an entry already held is a duplicate (replays change
nothing); one that fails to decode or verify is rejected with the reason; one
whose predecessor (author, seq-1, hash = prev) is not held yet waits as an
orphan and is connected when the predecessor arrives, so the order entries
arrive in never matters (orphans are bounded; the oldest go first). Two
different entries with the same author and seq are a fork: both are kept as
evidence and the author is flagged.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.ledger.entries import Entry, InvalidEntry, decode_entry

DEFAULT_MAX_ORPHANS = 10_000


@dataclass(frozen=True)
class Head:
    """How far an author's feed goes here: highest seq, entries held (more than seq
    means a fork), and a hash of the entries at the highest seq (differs when two
    nodes hold different branches of the same length)."""

    seq: int
    count: int
    tip: bytes


@dataclass
class IngestResult:
    accepted: list[Entry] = field(default_factory=list)
    duplicates: int = 0
    orphaned: int = 0
    rejected: list[str] = field(default_factory=list)
    forked: list[bytes] = field(default_factory=list)


class LedgerBook:
    def __init__(self, max_orphans: int = DEFAULT_MAX_ORPHANS) -> None:
        self.max_orphans = max_orphans
        self._entries: dict[bytes, Entry] = {}
        self._feeds: dict[bytes, dict[int, list[bytes]]] = {}
        self._heads: dict[bytes, Head] = {}  # kept per accepted entry (gossip asks often)
        self._orphans: OrderedDict[bytes, Entry] = OrderedDict()
        self._waiting: dict[bytes, list[bytes]] = {}  # prev hash -> orphan hashes
        self.flagged: dict[bytes, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_hash: object) -> bool:
        return entry_hash in self._entries

    @property
    def orphan_count(self) -> int:
        return len(self._orphans)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def get(self, entry_hash: bytes) -> Entry | None:
        return self._entries.get(entry_hash)

    def ingest(self, raws: Iterable[bytes]) -> IngestResult:
        result = IngestResult()
        for raw in raws:
            try:
                entry = decode_entry(raw)
            except InvalidEntry as exc:
                result.rejected.append(str(exc))
                continue
            self._ingest_one(entry, result)
        return result

    def _ingest_one(self, entry: Entry, result: IngestResult) -> None:
        if entry.hash in self._entries or entry.hash in self._orphans:
            result.duplicates += 1
            return
        if not self._chains(entry):
            self._keep_orphan(entry)
            result.orphaned += 1
            return
        ready = [entry]
        while ready:
            current = ready.pop()
            self._accept(current, result)
            for waiting in self._waiting.pop(current.hash, []):
                orphan = self._orphans.pop(waiting, None)
                if orphan is not None:
                    ready.append(orphan)

    def _chains(self, entry: Entry) -> bool:
        if entry.seq == 1:
            return True
        before = self._feeds.get(entry.author, {}).get(entry.seq - 1, [])
        return entry.prev in before

    def _accept(self, entry: Entry, result: IngestResult) -> None:
        self._entries[entry.hash] = entry
        at_seq = self._feeds.setdefault(entry.author, {}).setdefault(entry.seq, [])
        at_seq.append(entry.hash)
        self._update_head(entry.author, entry.seq)
        if len(at_seq) > 1:
            evidence = self.flagged.setdefault(entry.author, [])
            evidence.extend(h for h in at_seq if h not in evidence)
            result.forked.append(entry.author)
        result.accepted.append(entry)

    def _keep_orphan(self, entry: Entry) -> None:
        self._orphans[entry.hash] = entry
        self._waiting.setdefault(entry.prev, []).append(entry.hash)
        while len(self._orphans) > self.max_orphans:
            _, dropped = self._orphans.popitem(last=False)
            waiters = self._waiting.get(dropped.prev, [])
            if dropped.hash in waiters:
                waiters.remove(dropped.hash)

    def _update_head(self, author: bytes, seq: int) -> None:
        """One more entry at `seq` in `author`'s feed: its head changes in O(1)."""
        old = self._heads.get(author)
        feed = self._feeds[author]
        top = seq if old is None else max(seq, old.seq)
        tip = old.tip if old is not None and top == old.seq and seq != top else _tip(feed[top])
        self._heads[author] = Head(top, 1 if old is None else old.count + 1, tip)

    def heads(self) -> dict[bytes, Head]:
        return dict(self._heads)

    def orphan_floors(self) -> dict[bytes, int]:
        """For each author with orphans, the lowest orphaned seq (what to fetch below)."""
        floors: dict[bytes, int] = {}
        for orphan in self._orphans.values():
            floors[orphan.author] = min(orphan.seq, floors.get(orphan.author, orphan.seq))
        return floors

    def head_entry(self, author: bytes) -> Entry | None:
        """The latest entry of an unforked feed (what a new entry must follow)."""
        feed = self._feeds.get(author)
        if not feed:
            return None
        hashes = feed[max(feed)]
        return self._entries[hashes[0]] if len(hashes) == 1 else None

    def tips(self, author: bytes) -> list[Entry]:
        """The entries at the top seq of `author`'s feed (two or more: forked there)."""
        feed = self._feeds.get(author)
        return [self._entries[h] for h in feed[max(feed)]] if feed else []

    def range(self, author: bytes, first: int, last: int, limit: int) -> list[bytes]:
        """Raw entries of `author` with first <= seq <= last, in order, at most `limit`."""
        feed = self._feeds.get(author, {})
        out: list[bytes] = []
        for seq in range(max(first, 1), min(last, max(feed, default=0)) + 1):
            for entry_hash in sorted(feed.get(seq, [])):
                if len(out) == limit:
                    return out
                out.append(self._entries[entry_hash].raw)
        return out


def _tip(hashes: list[bytes]) -> bytes:
    return hashlib.blake2b(b"".join(sorted(hashes)), digest_size=16).digest()
