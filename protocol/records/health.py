"""How well a record is stored: who holds which shard index, what is missing.

Built from the holders' own answers (GetHoldings): an index counts only
where it is complete and not found corrupt. `hosts` is a maximum matching of
indices to distinct nodes, so `distinct_hosts` is how many node losses the
record is spread over; a held index left out of it is `crowded` (its only
holders already stand for other indices) and repair copies it to a node that
holds nothing of the record. A record is healthy with n distinct hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocol.records.messages import HoldingsFound
from protocol.records.placement import spread


@dataclass(frozen=True)
class RecordHealth:
    record_id: bytes
    k: int
    n: int
    holders: dict[bytes, tuple[int, ...]]  # node public key -> good complete indices
    partial: dict[bytes, tuple[int, ...]]
    corrupt: dict[bytes, tuple[int, ...]]
    hosts: dict[int, bytes]  # index -> the distinct node standing for it

    @classmethod
    def of(
        cls, record_id: bytes, k: int, n: int, answers: Sequence[tuple[bytes, HoldingsFound]]
    ) -> RecordHealth:
        holders: dict[bytes, tuple[int, ...]] = {}
        partial: dict[bytes, tuple[int, ...]] = {}
        corrupt: dict[bytes, tuple[int, ...]] = {}
        for node, found in answers:
            bad = set(found.corrupt)
            good = tuple(sorted(i for i in set(found.complete) - bad if 0 <= i < n))
            if good:
                holders[node] = good
            if found.partial:
                partial[node] = tuple(sorted(found.partial))
            if bad:
                corrupt[node] = tuple(sorted(bad))
        by_index: dict[int, list[bytes]] = {}
        for node in sorted(holders):
            for index in holders[node]:
                by_index.setdefault(index, []).append(node)
        return cls(record_id, k, n, holders, partial, corrupt, spread(by_index))

    @property
    def held(self) -> set[int]:
        return {i for indices in self.holders.values() for i in indices}

    @property
    def missing(self) -> tuple[int, ...]:
        held = self.held
        return tuple(i for i in range(self.n) if i not in held)

    @property
    def crowded(self) -> tuple[int, ...]:
        return tuple(sorted(self.held - set(self.hosts)))

    @property
    def distinct_hosts(self) -> int:
        return len(self.hosts)

    @property
    def readable(self) -> bool:
        return len(self.held) >= self.k

    @property
    def healthy(self) -> bool:
        return self.distinct_hosts == self.n

    def holders_of(self, index: int) -> list[bytes]:
        return [node for node, indices in sorted(self.holders.items()) if index in indices]

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id.hex(),
            "k": self.k,
            "n": self.n,
            "holders": {node.hex(): list(indices) for node, indices in self.holders.items()},
            "distinct_hosts": self.distinct_hosts,
            "missing": list(self.missing),
            "crowded": list(self.crowded),
            "partial": {node.hex(): list(indices) for node, indices in self.partial.items()},
            "corrupt": {node.hex(): list(indices) for node, indices in self.corrupt.items()},
            "readable": self.readable,
            "healthy": self.healthy,
        }
