"""Anti-entropy decisions, sans-IO: which peers, which ranges to pull.

Each round a node sends its feed heads to `fanout` random peers; comparing
heads says which entries it lacks. Ranges are pulled in batches of at most
`batch` entries per feed and `budget` per exchange, so a node far behind
catches up over several rounds instead of asking for everything at once.

Forks: a peer with the same highest seq but another tip holds a different
branch: its last `batch` entries are fetched. Entries fetched from deeper in a
foreign branch arrive as orphans (their predecessor is missing); while an
author has orphans, the range just below the lowest one is fetched, so the
branch is walked back batch by batch until it joins. The RNG is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from protocol.ledger.book import Head
from protocol.ledger.messages import FeedHead, FeedRange

T = TypeVar("T")


class Sampler(Protocol):
    """The caller's RNG (random.Random fits): the core makes no randomness itself."""

    def sample(self, population: Sequence[Any], k: int) -> list[Any]: ...


def heads_message(heads: Mapping[bytes, Head]) -> tuple[FeedHead, ...]:
    return tuple(FeedHead(author, h.seq, h.count, h.tip) for author, h in sorted(heads.items()))


def lag(mine: Mapping[bytes, Head], theirs: Iterable[FeedHead]) -> tuple[int, int]:
    """(entries a peer's heads show beyond ours, entries ours show beyond its), by seq.

    A gauge of how far apart two ledgers are, not an exact count: a fork of the
    same length counts as nothing, and feeds the peer does not list (it may
    have sent only some heads) count as ours alone.
    """
    ahead = behind = 0
    listed: set[bytes] = set()
    for head in theirs:
        listed.add(head.author)
        own = mine.get(head.author)
        seq = own.seq if own is not None else 0
        ahead += max(0, head.seq - seq)
        behind += max(0, seq - head.seq)
    behind += sum(own.seq for author, own in mine.items() if author not in listed)
    return ahead, behind


def missing_ranges(
    mine: Mapping[bytes, Head],
    theirs: Iterable[FeedHead],
    *,
    batch: int,
    budget: int,
    orphan_floors: Mapping[bytes, int] | None = None,
    frozen: Mapping[bytes, int] | None = None,
) -> list[FeedRange]:
    """Ranges to fetch from a peer whose heads are `theirs` (never beyond a frozen feed's
    seq: those entries would be refused)."""
    floors = orphan_floors or {}
    ranges = []
    total = 0
    for head in sorted(theirs, key=lambda h: h.author):
        span = _wanted(mine.get(head.author), head, floors.get(head.author), batch)
        if span is None:
            continue
        first, last = span
        stop = (frozen or {}).get(head.author)
        if stop is not None:
            if first > stop:
                continue
            last = min(last, stop)
        size = min(last - first + 1, budget - total)
        if size <= 0:
            break
        ranges.append(FeedRange(head.author, first, first + size - 1))
        total += size
    return ranges


def _wanted(
    own: Head | None, head: FeedHead, floor: int | None, batch: int
) -> tuple[int, int] | None:
    if floor is not None and floor > 1:
        return max(1, floor - batch), min(floor - 1, head.seq)  # walk a foreign branch back
    if own is None:
        return 1, min(head.seq, batch)
    if head.seq > own.seq:
        return own.seq + 1, min(head.seq, own.seq + batch)
    if head.seq == own.seq and head.tip != own.tip:
        return max(1, head.seq - batch + 1), head.seq  # another branch of the same length
    return None


def pick(candidates: Sequence[T], count: int, rng: Sampler) -> list[T]:
    """Up to `count` distinct candidates chosen at random."""
    chosen: list[T] = rng.sample(list(candidates), min(count, len(candidates)))
    return chosen
