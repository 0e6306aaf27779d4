"""A put's placement lookup reused while the network is smaller than a bucket.

A Kademlia lookup returns the k closest live nodes to its target. One that
comes back with fewer than k, every node it asked having answered and every
node of the routing table among them, has found the whole network, whatever its
target, so the lookup for the next record would find the same nodes. In a small
network (a few hospitals: fewer than k = 20 nodes) a put then needs no lookup of
its own: the last answer serves for `REUSE_FOR` seconds (a 1 MiB put spent about
a fifth of its time in it), unless the routing table has since learnt a node the
lookup did not know (a newcomer), or a holder chosen from it failed or was
distrusted, or a put from it found too few nodes or left its record degraded
(`forget`). The next put then looks up again. A lookup that missed a node (one
that timed out, was in backoff, or is down) is never reused: that node may be
back for the next put. A node that died within those seconds costs the put that
chose it a failed send and a top-up, as a node dying mid-put always does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.dht.contact import Contact

REUSE_FOR = 30.0  # seconds a small network's lookup answers the next puts


@dataclass(frozen=True)
class _Answer:
    contacts: tuple[Contact, ...]
    known: frozenset[bytes]  # the routing table's nodes when it was found
    at: float


class SmallNetworkLookups:
    """The last lookup's answer, while it is known to be the whole reachable network."""

    def __init__(self, bucket_size: int, reuse_for: float = REUSE_FOR) -> None:
        self.bucket_size = bucket_size
        self.reuse_for = reuse_for
        self._answer: _Answer | None = None
        self.reused = 0  # lookups saved, for tests and measurements

    def found(
        self, contacts: list[Contact], table: Iterable[Contact], now: float, *, failures: int
    ) -> None:
        """A lookup answered `contacts` while the routing table held `table`, `failures`
        of the nodes it asked not answering."""
        known = frozenset(contact.public_key for contact in table)
        answered = {contact.public_key for contact in contacts}
        if len(contacts) >= self.bucket_size or failures or not known <= answered:
            # A larger network (each key has its own closest), or one not all reached.
            self._answer = None
            return
        self._answer = _Answer(tuple(contacts), known, now)

    def reusable(self, table: Iterable[Contact], now: float) -> list[Contact] | None:
        """The last answer, if it still is the whole network; None: look up."""
        answer = self._answer
        if answer is None:
            return None
        fresh = 0 <= now - answer.at < self.reuse_for
        if not fresh or any(c.public_key not in answer.known for c in table):
            self._answer = None  # stale, or a node joined since
            return None
        self.reused += 1
        return list(answer.contacts)

    def forget(self) -> None:
        """A node chosen from the answer failed or was found out, or a put from it fell
        short: look up next time."""
        self._answer = None
