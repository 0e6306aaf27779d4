"""How fast one author's entries may arrive here: a token bucket per author on the
receiver's clock (passed in; this module reads no clock).

The feed rate limits (protocol.ledger.feeds) are measured on the author's own
timestamps, which have no lower bound: a feed backdated to 1970 is within
every window and could be offered tens of millions of entries at once. The
bucket bounds what any feed, of any claimed age, adds to this node per unit
of this node's time. An entry beyond it is deferred, not refused for good:
it is not remembered, and gossip offers it again once the bucket refilled,
so every node still ends with the same entries (only later).

Budgets are a node's own pace, not a protocol constant: a node with a
smaller one takes longer to converge, never to a different ledger.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_RATE_PER_S = 100.0  # entries per second per author, sustained
DEFAULT_BURST = 20_000  # entries per author at once (an hour's feed limit)
MAX_BUCKETS = 100_000  # authors tracked; the least recently seen beyond it start full


class IntakeBudget:
    """Per-author token buckets: `take(author, now_ms)` is False once an author's is empty."""

    def __init__(self, rate_per_s: float = DEFAULT_RATE_PER_S, burst: int = DEFAULT_BURST) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("an intake budget needs a positive rate and a burst of at least 1")
        self.rate_per_ms = rate_per_s / 1000.0
        self.burst = float(burst)
        self._buckets: OrderedDict[bytes, tuple[float, int]] = OrderedDict()  # tokens, at ms

    def available(self, author: bytes, now_ms: int) -> float:
        """Tokens the author has now (full for an author not seen lately)."""
        tokens, at = self._buckets.get(author, (self.burst, now_ms))
        elapsed = max(0, now_ms - at)  # a clock stepped back refills nothing
        return min(self.burst, tokens + elapsed * self.rate_per_ms)

    def take(self, author: bytes, now_ms: int) -> bool:
        """Spend one token of `author`'s if there is one."""
        tokens = self.available(author, now_ms)
        if tokens < 1.0:
            return False
        at = max(now_ms, self._buckets.get(author, (0.0, now_ms))[1])
        self._buckets[author] = (tokens - 1.0, at)
        self._buckets.move_to_end(author)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return True
