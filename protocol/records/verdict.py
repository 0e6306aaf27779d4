"""Whether a finished put kept its promise, sans-IO.

A put that reached fewer than `happy` distinct holders fails and records
nothing. One that reached `happy` but fewer than n distinct holders, or
that left more than n - k indices on one site (so losing that site loses
the record) while the network offers enough sites to avoid it, is recorded
but degraded, and says why. A network of one site, or of too few sites
to spread n indices with at most n - k on each, cannot do better, and a
put on it is not called degraded for its sites.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.records.health import RecordHealth


@dataclass(frozen=True)
class PutVerdict:
    holders: int  # distinct nodes standing for distinct indices
    sites: int  # distinct sites among them
    acceptable: bool  # at least `happy` distinct holders: the put may be recorded
    degraded: bool
    reasons: tuple[str, ...]


def site_loss_avoidable(n: int, k: int, site_count: int) -> bool:
    """Whether n indices fit on `site_count` sites with at most n - k on any one."""
    return site_count >= 2 and n - math.ceil(n / site_count) >= k


def survives_site_loss(health: RecordHealth, sites: Mapping[bytes, str]) -> bool:
    """Whether losing any one site leaves at least k distinct indices elsewhere."""
    per_site = Counter(sites.get(node, node.hex()) for node in health.hosts.values())
    return bool(per_site) and len(health.hosts) - max(per_site.values()) >= health.k


def judge_put(
    health: RecordHealth, sites: Mapping[bytes, str], *, happy: int, network_sites: int
) -> PutVerdict:
    """`health`: what the holders confirmed; `network_sites`: sites among the candidates."""
    hosts = health.distinct_hosts
    used = {sites.get(node, node.hex()) for node in health.hosts.values()}
    reasons = []
    if hosts < health.n:
        reasons.append(f"{hosts} of {health.n} shards on distinct nodes")
    if site_loss_avoidable(health.n, health.k, network_sites) and not survives_site_loss(
        health, sites
    ):
        reasons.append(
            f"on {len(used)} site(s), losing one of them loses the record"
            f" ({network_sites} sites were reachable)"
        )
    return PutVerdict(hosts, len(used), hosts >= happy, bool(reasons), tuple(reasons))
