"""Whether this node may extend its own ledger feed yet, sans-IO.

A node restored from an older backup holds an older head of its own feed
than its peers do; writing at once would make a second entry at a seq the
network already has: a fork, which flags the node and blocks its writes.
So at start a node writes nothing of its own until `quorum` peers (fewer
when it knows fewer) have shown it their heads and none of them knows more
of its feed than it holds; what they know more of, gossip pulls first.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.ledger.book import Head
from protocol.ledger.messages import FeedHead

DEFAULT_QUORUM = 2


class FeedConfirmation:
    def __init__(self, author: bytes, *, quorum: int = DEFAULT_QUORUM) -> None:
        self.author = author
        self.quorum = quorum
        self.confirmed = False
        self._by: set[bytes] = set()

    def trust_local(self) -> None:
        """The operator vouches that the local ledger is current (e.g. the only node)."""
        self.confirmed = True

    def heard(
        self, peer: bytes, theirs: Iterable[FeedHead], ours: Head | None, peers_known: int
    ) -> bool:
        """`peer` showed its heads; whether the feed is now confirmed."""
        if self.confirmed:
            return True
        seen = next((h for h in theirs if h.author == self.author), None)
        if seen is not None and (ours is None or seen.seq > ours.seq or seen.count > ours.count):
            return False  # it knows more of this node's feed: pull that first
        self._by.add(peer)
        self.confirmed = len(self._by) >= min(self.quorum, max(1, peers_known))
        return self.confirmed

    @property
    def confirmations(self) -> int:
        return len(self._by)
