"""The set of accepted ledger entries, one chained feed per author.

Ingest rules, in order: an entry already held is a duplicate (replays change
nothing); one that fails to decode or verify is rejected with the reason; one
whose predecessor (author, seq-1, hash = prev) is not held yet waits as an
orphan and is connected when the predecessor arrives, so the order entries
arrive in never matters (orphans are bounded; the oldest go first). Two
different entries with the same author and seq are a fork: both are kept as
evidence and the author is flagged. At most MAX_SIBLINGS (2) entries are kept
at one (author, seq), the smallest hashes: a smaller one evicts the largest
held sibling with the entries that follow it, a larger one is refused
unremembered, so every node keeps the same two whatever the order.

Intake (protocol.ledger.intake, passed in with the receiver's clock): an
entry of an author whose budget is spent is deferred (refused unremembered;
gossip offers it again), so entries of any claimed age arrive at a bounded
pace per author.

Bounds (protocol.ledger.feeds): an entry over its author's rate or quota, or
with a timestamp before its predecessor's, is refused (not kept; entries
that follow it are refused too, remembered by hash, at most
DEFAULT_MAX_REFUSED); one too far ahead of `now_ms` is refused unremembered,
to be offered again. An entry breaking a feed-local rule is kept as evidence,
its author flagged, and the feed frozen at its seq: held entries above it
are dropped (reported, so the state and the database drop them too) and
later ones refused. Every decision depends only on the entry's own chain, so
the set of entries kept does not depend on arrival order.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.ledger.entries import Entry, EntryType, InvalidEntry, decode_entry
from protocol.ledger.feeds import (
    MAX_CLOCK_SKEW_MS,
    MAX_SIBLINGS,
    limit_problem,
    rate_seqs,
    rule_problem,
)
from protocol.ledger.intake import IntakeBudget

DEFAULT_MAX_ORPHANS = 10_000
DEFAULT_MAX_REFUSED = 10_000
REFUSED_BEFORE = "refused before"
FOLLOWS_REFUSED = "follows a refused entry"
OVER_SIBLINGS = (
    f"more than {MAX_SIBLINGS} entries at one seq of a feed (a fork needs two as evidence)"
)
OVER_INTAKE = "over this node's intake budget for its author (deferred: taken when offered later)"


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
    refused: list[tuple[bytes, str]] = field(default_factory=list)  # (author, reason)
    frozen: list[tuple[bytes, str]] = field(default_factory=list)  # (author, reason)
    dropped: list[Entry] = field(default_factory=list)  # held before, dropped by a freeze
    flags: dict[bytes, list[bytes]] = field(default_factory=dict)  # authors' new evidence


class LedgerBook:
    def __init__(self, max_orphans: int = DEFAULT_MAX_ORPHANS) -> None:
        self.max_orphans = max_orphans
        self.violations: dict[bytes, str] = {}  # held entries that broke a feed rule
        self.frozen: dict[bytes, int] = {}  # author -> the seq its feed is frozen at
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._records_of: dict[bytes, list[bytes]] = {}  # record id -> valid record entries
        self._now_ms: int | None = None
        self._intake: IntakeBudget | None = None
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

    def is_orphan(self, entry_hash: bytes) -> bool:
        return entry_hash in self._orphans

    @property
    def orphan_count(self) -> int:
        return len(self._orphans)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def get(self, entry_hash: bytes) -> Entry | None:
        return self._entries.get(entry_hash)

    def ingest(
        self, raws: Iterable[bytes], now_ms: int | None = None, intake: IntakeBudget | None = None
    ) -> IngestResult:
        """Take in raw entries; `now_ms` (the receiver's clock) refuses entries from the
        future (None: no such check); `intake` (with `now_ms`) defers each author's
        entries beyond its budget."""
        self._now_ms = now_ms
        self._intake = intake if now_ms is not None else None
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
        early = self._early_refusal(entry)
        if early is not None:
            self._refuse(entry, early, result, remember=early in (REFUSED_BEFORE, FOLLOWS_REFUSED))
            return
        if not self._chains(entry):
            if self._out_of_budget(entry.author):  # no parking as an orphan either
                self._refuse(entry, OVER_INTAKE, result, remember=False)
                return
            self._keep_orphan(entry)
            result.orphaned += 1
            return
        ready = [entry]
        while ready:
            current = ready.pop()
            if not self._chains(current):  # its predecessor was just evicted
                continue
            refusal = self._early_refusal(current) or self._limits(current, {})
            if refusal is not None:
                self._refuse(current, refusal, result, remember=True)
                self._refuse_followers(current.hash, result)
                continue
            if not self._admit(current, result):
                continue
            self._accept(current, result)
            problem = rule_problem(current, self._own_record(current, {}))
            if problem is not None:
                self._freeze(current, problem, result)
                continue
            if current.type is EntryType.RECORD:
                self._records_of.setdefault(current.record_id, []).append(current.hash)
            for waiting in self._waiting.pop(current.hash, []):
                orphan = self._orphans.pop(waiting, None)
                if orphan is not None:
                    ready.append(orphan)

    # -- bounds and feed rules ----------------------------------------------------

    def _out_of_budget(self, author: bytes) -> bool:
        intake, now_ms = self._intake, self._now_ms
        return intake is not None and now_ms is not None and intake.available(author, now_ms) < 1

    def _admit(self, entry: Entry, result: IngestResult) -> bool:
        """Room for `entry` among its siblings and in its author's intake budget (a
        sibling with a larger hash is evicted for it); refused unremembered if not."""
        siblings = self._feeds.get(entry.author, {}).get(entry.seq, [])
        largest = max(siblings) if len(siblings) >= MAX_SIBLINGS else None
        if largest is not None and entry.hash > largest:
            self._refuse(entry, OVER_SIBLINGS, result, remember=False)
            return False
        intake, now_ms = self._intake, self._now_ms
        if intake is not None and now_ms is not None and not intake.take(entry.author, now_ms):
            self._refuse(entry, OVER_INTAKE, result, remember=False)
            return False
        if largest is not None:
            self._evict(largest, result)
        return True

    def _early_refusal(self, entry: Entry) -> str | None:
        """Refusals decided without the entry's predecessor."""
        if entry.hash in self._refused or entry.prev in self._refused:
            return REFUSED_BEFORE if entry.hash in self._refused else FOLLOWS_REFUSED
        frozen_at = self.frozen.get(entry.author)
        if frozen_at is not None and entry.seq > frozen_at:
            return f"feed frozen at seq {frozen_at} (it broke a ledger rule there)"
        if self._now_ms is not None and entry.timestamp > self._now_ms + MAX_CLOCK_SKEW_MS:
            return "timestamp ahead of this node's clock by more than the allowed skew"
        return None

    def _refuse(self, entry: Entry, reason: str, result: IngestResult, *, remember: bool) -> None:
        result.refused.append((entry.author, reason))
        if remember:
            self._refused[entry.hash] = None
            while len(self._refused) > DEFAULT_MAX_REFUSED:
                self._refused.popitem(last=False)

    def _refuse_followers(self, refused: bytes, result: IngestResult) -> None:
        """Orphans waiting on a refused entry (and theirs) are refused too."""
        stack = [refused]
        while stack:
            for waiting in self._waiting.pop(stack.pop(), []):
                orphan = self._orphans.pop(waiting, None)
                if orphan is not None:
                    self._refuse(orphan, FOLLOWS_REFUSED, result, remember=True)
                    stack.append(orphan.hash)

    def _lookup(self, entry_hash: bytes, extra: dict[bytes, Entry]) -> Entry:
        return extra[entry_hash] if entry_hash in extra else self._entries[entry_hash]

    def _ancestor(self, entry: Entry, seq: int, extra: dict[bytes, Entry]) -> Entry:
        """`entry`'s ancestor at `seq` (< entry.seq): held entries and `extra` (new ones)."""
        current = entry
        while current.seq > seq:
            if current.prev not in extra:
                held = self._feeds.get(entry.author, {}).get(seq, [])
                if len(held) == 1:  # every ancestor is held: a lone entry at seq is it
                    return self._entries[held[0]]
            current = self._lookup(current.prev, extra)
        return current

    def _limits(self, entry: Entry, extra: dict[bytes, Entry]) -> str | None:
        parent = self._lookup(entry.prev, extra) if entry.seq > 1 else None
        ancestors = {seq: self._ancestor(entry, seq, extra) for seq in rate_seqs(entry.seq)}
        return limit_problem(entry, parent, ancestors)

    def _own_record(self, entry: Entry, extra: dict[bytes, Entry]) -> Entry | None:
        """A valid record entry of `entry`'s record id among its ancestors."""
        candidates = [self._entries[h] for h in self._records_of.get(entry.record_id, [])]
        candidates += [e for e in extra.values() if e.type is EntryType.RECORD]
        for record in candidates:
            if (
                record.author == entry.author
                and record.record_id == entry.record_id
                and record.seq < entry.seq
                and self._ancestor(entry, record.seq, extra).hash == record.hash
            ):
                return record
        return None

    def check_new(self, entries: list[Entry], now_ms: int | None = None) -> dict[bytes, str]:
        """Why the book would refuse or freeze on each of `entries` (consecutive, new,
        following a held head), without taking them in."""
        self._now_ms = now_ms
        extra: dict[bytes, Entry] = {}
        problems: dict[bytes, str] = {}
        for entry in entries:
            problem = (
                self._early_refusal(entry)
                or self._limits(entry, extra)
                or rule_problem(entry, self._own_record(entry, extra))
            )
            if problem is not None:
                problems[entry.hash] = problem
            extra[entry.hash] = entry
        return problems

    def _freeze(self, entry: Entry, reason: str, result: IngestResult) -> None:
        """Keep `entry` as evidence and stop its author's feed at its seq."""
        author = entry.author
        self.violations[entry.hash] = reason
        result.frozen.append((author, reason))
        frozen_at = self.frozen.get(author)
        if frozen_at is None or entry.seq < frozen_at:
            self.frozen[author] = entry.seq
            self._drop_above(author, entry.seq, result)
        feed = self._feeds[author]
        top = self.frozen[author]
        evidence = [h for hashes in feed.values() if len(hashes) > 1 for h in hashes]
        evidence += [h for h in feed.get(top, []) if h in self.violations and h not in evidence]
        self.flagged[author] = evidence
        result.flags[author] = evidence

    def _drop_above(self, author: bytes, seq: int, result: IngestResult) -> None:
        feed = self._feeds[author]
        gone: list[Entry] = []
        for above in [s for s in feed if s > seq]:
            for entry_hash in feed.pop(above):
                dropped = self._entries.pop(entry_hash)
                self.violations.pop(entry_hash, None)
                of_record = self._records_of.get(dropped.record_id, [])
                if entry_hash in of_record:
                    of_record.remove(entry_hash)
                gone.append(dropped)
        _report_gone(gone, result)
        for orphan in [o for o in self._orphans.values() if o.author == author and o.seq > seq]:
            del self._orphans[orphan.hash]
            waiters = self._waiting.get(orphan.prev, [])
            if orphan.hash in waiters:
                waiters.remove(orphan.hash)
        top = max(feed)
        self._heads[author] = Head(top, sum(len(h) for h in feed.values()), _tip(feed[top]))

    def _evict(self, victim: bytes, result: IngestResult) -> None:
        """Drop the held entry `victim` (a sibling with a larger hash than a newcomer's)
        and every held entry that follows it; the feed's freeze, evidence and head are
        recomputed from what remains (rare: each eviction needs a smaller hash)."""
        author = self._entries[victim].author
        feed = self._feeds[author]
        seq = self._entries[victim].seq
        gone_hashes = {victim}
        gone: list[Entry] = []
        while seq in feed:
            level = feed[seq]
            out = [h for h in level if h in gone_hashes or self._entries[h].prev in gone_hashes]
            if not out:
                break
            for entry_hash in out:
                level.remove(entry_hash)
                gone_hashes.add(entry_hash)
                dropped = self._entries.pop(entry_hash)
                self.violations.pop(entry_hash, None)
                of_record = self._records_of.get(dropped.record_id, [])
                if entry_hash in of_record:
                    of_record.remove(entry_hash)
                gone.append(dropped)
            if not level:
                del feed[seq]
            seq += 1
        _report_gone(gone, result)
        broken = [s for s, hashes in feed.items() for h in hashes if h in self.violations]
        if broken:
            self.frozen[author] = min(broken)
        else:
            self.frozen.pop(author, None)
        top_seq = self.frozen.get(author)
        evidence = [h for hashes in feed.values() if len(hashes) > 1 for h in hashes]
        if top_seq is not None:
            evidence += [h for h in feed[top_seq] if h in self.violations and h not in evidence]
        if evidence:
            self.flagged[author] = evidence
        else:
            self.flagged.pop(author, None)
        result.flags[author] = evidence
        if feed:
            top = max(feed)
            self._heads[author] = Head(top, sum(len(h) for h in feed.values()), _tip(feed[top]))
        else:
            del self._feeds[author]
            del self._heads[author]

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
            result.flags[entry.author] = evidence
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


def _report_gone(gone: list[Entry], result: IngestResult) -> None:
    """Entries dropped from the book: those accepted in this very batch were never
    reported (just unreport them); the others are reported dropped."""
    if gone:
        fresh = {e.hash for e in result.accepted}
        result.dropped += [e for e in gone if e.hash not in fresh]
        hashes = {e.hash for e in gone}
        result.accepted = [e for e in result.accepted if e.hash not in hashes]


def _tip(hashes: list[bytes]) -> bytes:
    return hashlib.blake2b(b"".join(sorted(hashes)), digest_size=16).digest()
