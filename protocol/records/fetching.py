"""Which holder to ask for which block, sans-IO: the reader's plan, round by round.

Each segment needs `need` verified blocks. A round asks, for every segment
still short, the indices it lacks: data shards first (no arithmetic to
decode), each from its fastest known holder (`Latency`, an exponentially
weighted average per node), never an (index, holder) pair already tried for
that segment nor a holder that served a corrupt block of that index. When a
round has nothing left to ask, the fetch has failed. Every answer is
verified by the shell before it is reported here as received.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from protocol.dht.contact import Contact
from protocol.records.messages import BlockRef

UNKNOWN_LATENCY = 0.05  # seconds assumed for a node never measured
SMOOTHING = 0.3  # weight of the newest measurement


class Latency:
    """Per-node response time, smoothed; at most `max_nodes` remembered (oldest dropped)."""

    def __init__(self, max_nodes: int = 4096) -> None:
        self.max_nodes = max_nodes
        self._seconds: OrderedDict[bytes, float] = OrderedDict()

    def note(self, node: bytes, elapsed: float) -> None:
        before = self._seconds.pop(node, None)
        self._seconds[node] = (
            elapsed if before is None else (1 - SMOOTHING) * before + SMOOTHING * elapsed
        )
        while len(self._seconds) > self.max_nodes:
            self._seconds.popitem(last=False)

    def rank(self, node: bytes) -> float:
        return self._seconds.get(node, UNKNOWN_LATENCY)

    def __len__(self) -> int:
        return len(self._seconds)


class FetchRounds:
    def __init__(
        self,
        *,
        segments: Iterable[int],
        need: int,
        n: int,
        holders: Mapping[int, Sequence[Contact]],
        latency: Latency,
        corrupt: Mapping[bytes, set[int]],
        avoid: Iterable[int] = (),
    ) -> None:
        self.need = need
        self.n = n
        self.holders = holders
        self.latency = latency
        self.corrupt = corrupt  # node -> indices it served corrupt (shared across fetches)
        self.avoid = set(avoid)
        self.have: dict[int, set[int]] = {s: set() for s in segments}
        self._tried: dict[int, set[tuple[int, bytes]]] = {s: set() for s in self.have}

    def received(self, segment: int, index: int) -> None:
        """A verified block of (segment, index) arrived."""
        self.have[segment].add(index)

    def short(self) -> list[int]:
        return [s for s, indices in self.have.items() if len(indices) < self.need]

    def next_round(self) -> dict[Contact, list[BlockRef]]:
        """The blocks to ask each holder for now (empty: done, or nothing left to try)."""
        plan: dict[Contact, list[BlockRef]] = {}
        for segment in self.short():
            wanted = self.need - len(self.have[segment])
            for index in range(self.n):
                if wanted == 0:
                    break
                holder = self._best_holder(segment, index)
                if holder is None:
                    continue
                self._tried[segment].add((index, holder.public_key))
                plan.setdefault(holder, []).append(BlockRef(segment, index))
                wanted -= 1
        return plan

    def _best_holder(self, segment: int, index: int) -> Contact | None:
        if index in self.have[segment] or index in self.avoid:
            return None
        options = [
            h
            for h in self.holders.get(index, ())
            if (index, h.public_key) not in self._tried[segment]
            and index not in self.corrupt.get(h.public_key, ())
        ]
        return min(options, key=lambda h: self.latency.rank(h.public_key), default=None)

    def shortfall(self) -> str:
        """Why the fetch failed: the segment furthest from enough blocks."""
        worst = min(self.short(), key=lambda s: len(self.have[s]))
        return (
            f"segment {worst}: only {len(self.have[worst])} verified shards reachable,"
            f" {self.need} needed"
        )
