"""When a contact that fails to answer is evicted, sans-IO.

Garbage (a malformed or impossible answer) evicts at once. Silence evicts
after `max_failures` failed queries, but only if some other peer was heard
since the first of them went out: when nobody answers, the fault is more
likely this node's own network, and a node that is itself cut off must keep
its routing table to find its way back. The same rule judges the liveness
ping of a full bucket's oldest contact. Failure counts are kept for at most
`max_tracked` contacts (the oldest dropped first), so contacts learned from
lookups that never answer cost bounded memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Evict:
    node_id: bytes
    reason: str


@dataclass(frozen=True)
class _Failures:
    count: int
    first_sent_at: float


class Liveness:
    def __init__(self, max_failures: int, max_tracked: int = 4096) -> None:
        self.max_failures = max_failures
        self.max_tracked = max_tracked
        self.heard_at = -math.inf  # when any peer last talked to or answered this node
        self.failed_at = -math.inf  # when the latest query that failed was sent
        self._failures: OrderedDict[bytes, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def heard(self, node_id: bytes, now: float) -> None:
        """`node_id` talked to this node or answered it at `now`: it is alive."""
        self.heard_at = max(self.heard_at, now)
        self._failures.pop(node_id, None)

    def failed(self, node_id: bytes, *, sent_at: float, garbage: bool = False) -> Evict | None:
        """A query sent to `node_id` at `sent_at` failed; the eviction it calls for, if any."""
        self.failed_at = max(self.failed_at, sent_at)
        before = self._failures.pop(node_id, None)
        failures = _Failures(
            1 if before is None else before.count + 1,
            sent_at if before is None else before.first_sent_at,
        )
        if garbage:
            return Evict(node_id, "sent garbage")
        if failures.count >= self.max_failures and self.heard_at >= failures.first_sent_at:
            return Evict(node_id, f"failed {failures.count} times")
        self._failures[node_id] = failures
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)
        return None

    def ping_failed(self, node_id: bytes, sent_at: float) -> Evict | None:
        """A full bucket's oldest contact did not answer a ping sent at `sent_at`."""
        self.failed_at = max(self.failed_at, sent_at)
        if self.heard_at >= sent_at:  # others answered meanwhile: it is the peer, not us
            self._failures.pop(node_id, None)
            return Evict(node_id, "did not answer a liveness ping")
        return None
