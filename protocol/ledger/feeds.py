"""Per-author bounds and feed-local rules: network-wide constants, decided per feed.

Every rule here depends only on an entry and its own ancestors (the chain
its `prev` hashes name), never on other feeds or on what arrived first, so
every node decides the same for the same entry. That is also why the limits
are constants of the protocol and not node settings: a node with a lower
limit would refuse entries its peers keep, and their ledgers would differ
for good (its digest never equal, gossip pulling the same entries forever).

Limits (an entry over one is refused: not stored, not gossiped; a later
entry at the same seq, written once the author is within its limits again,
is accepted):
- timestamps never decrease along a feed;
- an entry more than MAX_CLOCK_SKEW_MS ahead of the receiver's clock is not
  accepted yet (refused without being remembered; gossip offers it again);
- at most N entries in any window of W ms, for each (W, N) in RATE_LIMITS:
  entry s is over when its ancestor s-N is less than W older than it;
- at most MAX_FEED_ENTRIES entries in a feed;
- at most MAX_SIBLINGS entries at one seq, the smallest hashes (a fork's
  siblings have no common ancestor at seq-N, so the windows cannot see them).
A busy hospital writing 10,000 records a day, each with three grants, writes
40,000 entries a day: within 100,000 a day, 20,000 an hour and 2,000 a minute.

Rules (an entry breaking one is kept as evidence, its author flagged and its
feed frozen at that seq: nothing after it is kept or served):
- a record entry must be written by its owner, with an id derived from the
  owner's key, and not repeat a record id earlier in its own feed;
- a grant (old format), tombstone, emergency or emergency_signoff must name a
  record created earlier in its author's own feed (so only the owner can; an
  honest writer checks first).
Attestations, stealth grants (`sgrant`), revokes and accesses are judged against other
feeds (a co-owner's one-time key P writes them in a feed of its own, and her
grant may arrive later), so they never freeze a feed: one the state refuses
is kept, rejected with its reason, and counts against its author's limits
like any entry.
"""

from __future__ import annotations

from protocol.ledger.entries import Entry, EntryType
from protocol.ledger.state import record_problem

MAX_CLOCK_SKEW_MS = 5 * 60_000
RATE_LIMITS: tuple[tuple[int, int], ...] = (
    (60_000, 2_000),  # a minute
    (3_600_000, 20_000),  # an hour
    (86_400_000, 100_000),  # a day
)
MAX_FEED_ENTRIES = 40_000_000  # a year of a busy hospital's feed at the daily limit
MAX_SIBLINGS = 2  # entries kept at one (author, seq): two prove a fork, more add nothing
_JUDGED_BY_STATE = frozenset(
    {EntryType.ATTEST, EntryType.CLAIM, EntryType.SGRANT, EntryType.REVOKE, EntryType.ACCESS}
)


def _window(ms: int) -> str:
    return {60_000: "a minute", 3_600_000: "an hour", 86_400_000: "a day"}.get(ms, f"{ms} ms")


def limit_problem(entry: Entry, parent: Entry | None, ancestors: dict[int, Entry]) -> str | None:
    """Why `entry` is over its author's limits; `ancestors` maps seq-N to that ancestor."""
    if entry.seq > MAX_FEED_ENTRIES:
        return f"feed longer than {MAX_FEED_ENTRIES} entries"
    if parent is not None and entry.timestamp < parent.timestamp:
        return "timestamp earlier than the entry before it"
    for window, most in RATE_LIMITS:
        ancestor = ancestors.get(entry.seq - most)
        if ancestor is not None and entry.timestamp - ancestor.timestamp < window:
            return f"over the rate limit of {most} entries in {_window(window)}"
    return None


def rate_seqs(seq: int) -> list[int]:
    """The ancestors' seqs `limit_problem` needs for an entry at `seq`."""
    return [seq - most for _, most in RATE_LIMITS if seq > most]


def rule_problem(entry: Entry, own_record: Entry | None) -> str | None:
    """Why `entry` breaks a feed-local rule; `own_record`: a valid record entry of the
    same id among its ancestors, if any."""
    if entry.type is EntryType.RECORD:
        return record_problem(entry) or ("record already exists" if own_record else None)
    if own_record is not None or entry.type in _JUDGED_BY_STATE:
        return None
    return f"{entry.type} of a record not created earlier in its author's own feed"
