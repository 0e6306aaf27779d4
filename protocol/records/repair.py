"""Repair decisions, sans-IO: whether a record can be repaired, onto which nodes, by whom.

Indices no live node holds are rebuilt first; crowded indices (held only by
nodes that already stand for another index) are copied too, as long as nodes
holding nothing of the record remain for them. Targets come from
`add_holders`: nodes holding nothing of the record first, sites balanced. A
target never gets an index it already holds.

The coordinator of a record is its live holder with the smallest node id:
the only one that repairs it in background passes, so holders do not race
each other to rebuild the same shards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocol.ids import node_id
from protocol.records.health import RecordHealth
from protocol.records.placement import Candidate, add_holders


@dataclass(frozen=True)
class RepairPlan:
    targets: dict[int, bytes] = field(default_factory=dict)  # index -> node to rebuild it on
    note: str = ""  # why there is nothing to do, when targets is empty


def triage(health: RecordHealth) -> str | None:
    """Why the record gets no repair now (healthy, or too little left); None: plan one."""
    if health.healthy:
        return "healthy"
    if not health.readable:
        return (
            f"unrecoverable for now: {len(health.held)} of {health.k} needed"
            " shard indices reachable"
        )
    return None


def plan_repair(
    health: RecordHealth, pool: Sequence[Candidate[bytes]], sites: Mapping[bytes, str]
) -> RepairPlan:
    """Targets for the record's missing and crowded indices among `pool` (closest first).

    `sites` gives the site of every node in `pool` and of every current holder.
    """
    note = triage(health)
    if note is not None:
        return RepairPlan(note=note)
    fresh = sum(1 for c in pool if c.node not in health.holders)
    spare = max(0, fresh - len(health.missing))
    needs = [*health.missing, *health.crowded[:spare]]
    if not needs or not pool:
        return RepairPlan(note="no node holding none of the record is reachable")
    targets = {
        index: node
        for index, node in add_holders(needs, pool, health.holders, sites).items()
        if index not in health.holders.get(node, ())
    }
    if not targets:
        return RepairPlan(note="every reachable node already holds what it could take")
    return RepairPlan(targets)


def coordinator(health: RecordHealth) -> bytes | None:
    """The live holder that repairs this record (None: no live holder)."""
    return min(health.holders, key=node_id) if health.holders else None
