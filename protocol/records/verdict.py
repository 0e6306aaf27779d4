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

from dataclasses import dataclass

from protocol.records.health import RecordHealth, site_of
from protocol.text import counted


@dataclass(frozen=True)
class PutVerdict:
    holders: int  # distinct nodes standing for distinct indices
    sites: int  # distinct sites among them
    acceptable: bool  # at least `happy` distinct holders: the put may be recorded
    degraded: bool
    reasons: tuple[str, ...]


def judge_put(health: RecordHealth, *, happy: int) -> PutVerdict:
    """`health`: what the holders confirmed, with their sites and the network's site count."""
    hosts = health.distinct_hosts
    used = {site_of(node, health.sites) for node in health.hosts.values()}
    reasons = []
    if hosts < health.n:
        reasons.append(f"{hosts} of {health.n} shards on distinct nodes")
    if not health.site_safe:
        reasons.append(
            f"on {counted(len(used), 'site')}, losing one of them loses the record"
            f" (the network has {counted(health.network_sites, 'site')})"
        )
    return PutVerdict(hosts, len(used), hosts >= happy, bool(reasons), tuple(reasons))
