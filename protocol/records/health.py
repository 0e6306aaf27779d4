"""How well a record is stored: who holds which shard index, what is missing.

Built from the holders' own answers (GetHoldings): an index counts only
where it is complete, not found corrupt, and not `unproven` (its holder
failed an audit: see node/records/audit.py). `hosts` is a maximum matching of
indices to distinct nodes, so `distinct_hosts` is how many node losses the
record is spread over; a held index left out of it is `crowded` (its only
holders already stand for other indices) and repair copies it to a node that
holds nothing of the record.

Sites: when the network has enough sites to spread n indices with at most
n - k on any one (`site_loss_avoidable`), a record must also survive the
loss of any one site: every site's loss must leave at least k distinct good
indices on other sites. A record is healthy with n distinct hosts and, where
it can be, safe from the loss of a site. `sites` names the site of every
holder (a holder of unknown site counts as a site of its own);
`network_sites` is how many sites the network is known to have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from protocol.records.messages import HoldingsFound
from protocol.records.placement import site_loss_avoidable, spread


@dataclass(frozen=True)
class RecordHealth:
    record_id: bytes
    k: int
    n: int
    holders: dict[bytes, tuple[int, ...]]  # node public key -> good complete indices
    partial: dict[bytes, tuple[int, ...]]
    corrupt: dict[bytes, tuple[int, ...]]
    hosts: dict[int, bytes]  # index -> the distinct node standing for it
    sites: Mapping[bytes, str] = field(default_factory=dict)  # holder -> its site
    network_sites: int = 0  # sites the network is known to have
    unproven: dict[bytes, tuple[int, ...]] = field(default_factory=dict)  # failed an audit
    # Counted on the holder's word: the auditing node may not read the record, so the
    # holder rightly refused to show a block (check --network on an unrelated node).
    unaudited: dict[bytes, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        record_id: bytes,
        k: int,
        n: int,
        answers: Sequence[tuple[bytes, HoldingsFound]],
        *,
        sites: Mapping[bytes, str] | None = None,
        network_sites: int = 0,
        unproven: Mapping[bytes, Iterable[int]] | None = None,
        unaudited: Mapping[bytes, Iterable[int]] | None = None,
    ) -> RecordHealth:
        failed = {node: tuple(sorted(set(i))) for node, i in (unproven or {}).items() if i}
        holders: dict[bytes, tuple[int, ...]] = {}
        partial: dict[bytes, tuple[int, ...]] = {}
        corrupt: dict[bytes, tuple[int, ...]] = {}
        for node, found in answers:
            bad = set(found.corrupt)
            good_claims = set(found.complete) - set(failed.get(node, ()))
            good = tuple(sorted(i for i in good_claims - bad if 0 <= i < n))
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
        return cls(
            record_id,
            k,
            n,
            holders,
            partial,
            corrupt,
            spread(by_index),
            dict(sites or {}),
            network_sites,
            failed,
            {node: tuple(sorted(set(i))) for node, i in (unaudited or {}).items() if i},
        )

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
    def site_losses(self) -> dict[str, int]:
        """For each holder site: distinct good indices left on the other sites if it is lost."""
        return site_losses(self.holders, self.sites)

    @property
    def site_safe(self) -> bool:
        """Losing any one site leaves it readable, or the network has too few sites for it."""
        if not site_loss_avoidable(self.n, self.k, self.network_sites):
            return True
        losses = self.site_losses
        return bool(losses) and min(losses.values()) >= self.k

    @property
    def healthy(self) -> bool:
        return self.distinct_hosts == self.n and self.site_safe

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
            "unproven": {node.hex(): list(indices) for node, indices in self.unproven.items()},
            "unaudited": {node.hex(): list(indices) for node, indices in self.unaudited.items()},
            "sites": {node.hex(): site for node, site in self.sites.items()},
            "network_sites": self.network_sites,
            "site_losses": self.site_losses,
            "site_safe": self.site_safe,
            "readable": self.readable,
            "healthy": self.healthy,
        }


def counting(health: RecordHealth, node: bytes, index: int, site: str | None) -> RecordHealth:
    """The health with `node` holding `index` too (at `site`, if known): what a record
    looks like once a holder's proven claim counts whatever its holdings answer said."""
    if not 0 <= index < health.n or index in health.holders.get(node, ()):
        return health
    holders = {**health.holders, node: tuple(sorted({*health.holders.get(node, ()), index}))}
    by_index: dict[int, list[bytes]] = {}
    for holder in sorted(holders):
        for held in holders[holder]:
            by_index.setdefault(held, []).append(holder)
    sites = {**health.sites, node: site} if site else health.sites
    return replace(health, holders=holders, hosts=spread(by_index), sites=sites)


def site_of(node: bytes, sites: Mapping[bytes, str]) -> str:
    """A node's site; a node of unknown site is a site of its own."""
    return sites.get(node) or node.hex()


def site_losses(
    holders: Mapping[bytes, Iterable[int]], sites: Mapping[bytes, str]
) -> dict[str, int]:
    """For each site holding something: distinct indices held outside it."""
    by_site: dict[str, set[int]] = {}
    for node, indices in holders.items():
        by_site.setdefault(site_of(node, sites), set()).update(indices)
    return {
        site: len(set().union(*(held for other, held in by_site.items() if other != site)))
        for site in by_site
    }
