"""Whether this node's ledger is caught up with its peers, sans-IO.

Two questions, answered from the feed heads peers show after gossip pulled
what they had beyond this node:

- May it extend its own feed? A node restored from an older backup holds an
  older head of its own feed than its peers do; writing at once would make a
  second entry at a seq the network already has: a fork, which flags the node
  and blocks its writes. So it writes nothing of its own until `quorum` peers
  showed no more of its feed than it holds.
- Has it caught up at all? Until `quorum` peers showed no feed beyond its own
  copies, a record it holds shards of may simply not have reached its ledger
  yet: it must not take those shards for leftovers of failed uploads.

A peer that shows no heads at all (a fresh node) confirms nothing while this
node holds entries: it may not have received them yet. The quorum shrinks to
the number of peers known (a two-node network), which the caller passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from protocol.ledger.book import Head
from protocol.ledger.messages import FeedHead

DEFAULT_QUORUM = 2


def _beyond(theirs: FeedHead, ours: Head | None) -> bool:
    return ours is None or theirs.seq > ours.seq or theirs.count > ours.count


class FeedConfirmation:
    def __init__(self, author: bytes, *, quorum: int = DEFAULT_QUORUM) -> None:
        self.author = author
        self.quorum = quorum
        self.confirmed = False  # this node may extend its own feed
        self.caught_up = False  # no peer knows a feed beyond this node's copy
        self._own: set[bytes] = set()
        self._all: set[bytes] = set()

    def trust_local(self) -> None:
        """The operator vouches that the local ledger is current (e.g. the only node)."""
        self.confirmed = self.caught_up = True

    def heard(
        self,
        peer: bytes,
        theirs: Sequence[FeedHead],
        ours: Mapping[bytes, Head],
        peers_known: int,
    ) -> bool:
        """`peer` showed its heads; whether this node's own feed is now confirmed."""
        if not theirs and ours:
            return self.confirmed  # a fresh peer vouches for nothing we hold
        need = min(self.quorum, max(1, peers_known))
        if not any(h.author == self.author and _beyond(h, ours.get(h.author)) for h in theirs):
            self._own.add(peer)
            self.confirmed = self.confirmed or len(self._own) >= need
        if not any(_beyond(h, ours.get(h.author)) for h in theirs):
            self._all.add(peer)
            self.caught_up = self.caught_up or len(self._all) >= need
        return self.confirmed

    @property
    def confirmations(self) -> int:
        return len(self._own)
