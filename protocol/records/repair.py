"""Repair decisions, sans-IO: whether a record can be repaired, onto which nodes, by whom.

Indices no live node holds are rebuilt first; crowded indices (held only by
nodes that already stand for another index) are copied too, as long as nodes
holding nothing of the record remain for them. Targets come from
`add_holders`: nodes holding nothing of the record first, sites balanced. A
target never gets an index it already holds, and nodes with room for a shard
come before nodes without.

Then sites: when the network has enough sites and the record, as planned so
far, would not survive losing its most exposed site, indices held only there
are copied to nodes of other sites until every site's loss leaves k distinct
indices elsewhere (or no candidate elsewhere is left). Copies go beyond n
shards on purpose: they are what lets one hospital go dark.

Coordinator: one live holder repairs a record in background passes, so
holders do not race each other to rebuild the same shards. The record's
live holders are ranked per record by rendezvous hashing (a keyed BLAKE2b of
record id and node key, smallest first), so no identity is first for every
record and no member can pick its rank without a new certified key. A
holder that is first and never repairs must not hold the record hostage:
each holder counts how long it has itself seen the record unhealthy but
repairable, and the turn passes to the holder of rank r once r deadlines
went by without the record becoming healthy (after the last rank, back to
the first: every live holder keeps getting turns). Holders' clocks are
their own: a takeover happens within a pass of the deadline, and in the
honest case the first-ranked holder repairs long before the deadline.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from protocol.records.health import RecordHealth, counting, site_losses, site_of
from protocol.records.placement import Candidate, add_holders, site_loss_avoidable


@dataclass(frozen=True)
class RepairPlan:
    targets: dict[int, bytes] = field(default_factory=dict)  # index -> node to rebuild it on
    copies: list[tuple[int, bytes]] = field(default_factory=list)  # (index, node): site safety
    note: str = ""  # why there is nothing to do, when targets is empty

    def assignments(self) -> list[tuple[int, bytes]]:
        """Every (index, node) to rebuild, the missing and crowded ones first."""
        return [*self.targets.items(), *self.copies]


def repair_read_needed(health: RecordHealth, asker: bytes, index: int, site: str | None) -> bool:
    """Whether a holder serves blocks to another holder that proved it holds `index`:
    only while the record needs repair as this holder last saw it, the asker's proven
    index counted (an asker hiding its own claim does not make a need). Otherwise a
    holder colluding with a revoked grantee would read the record whole at any time."""
    return not counting(health, asker, index, site).healthy


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
    health: RecordHealth,
    pool: Sequence[Candidate[bytes]],
    sites: Mapping[bytes, str],
    need: int = 0,
) -> RepairPlan:
    """Targets for the record's missing and crowded indices among `pool` (closest first),
    then for copies that make it survive the loss of any one site.

    `sites` gives the site of every node in `pool` and of every current holder;
    `need` is the bytes one shard index takes (nodes with less room come last).
    """
    note = triage(health)
    if note is not None:
        return RepairPlan(note=note)
    if not pool:
        return RepairPlan(note="no node holding none of the record is reachable")
    targets: dict[int, bytes] = {}
    needs: list[int] = []
    if health.distinct_hosts < health.n:
        fresh = sum(1 for c in pool if c.node not in health.holders)
        spare = max(0, fresh - len(health.missing))
        needs = [*health.missing, *health.crowded[:spare]]
        if needs:
            targets = {
                index: node
                for index, node in add_holders(needs, pool, health.holders, sites, need).items()
                if index not in health.holders.get(node, ())
            }
    copies = _site_copies(health, pool, sites, targets, need)
    if not targets and not copies:
        if health.distinct_hosts < health.n and not needs:
            return RepairPlan(note="no node holding none of the record is reachable")
        if health.distinct_hosts == health.n:
            return RepairPlan(note="no reachable node on another site can take a copy")
        return RepairPlan(note="every reachable node already holds what it could take")
    return RepairPlan(targets, copies)


def _site_copies(
    health: RecordHealth,
    pool: Sequence[Candidate[bytes]],
    sites: Mapping[bytes, str],
    targets: Mapping[int, bytes],
    need: int,
) -> list[tuple[int, bytes]]:
    """(index, node) copies to other sites until losing any one site leaves k indices."""
    if not site_loss_avoidable(health.n, health.k, health.network_sites):
        return []
    held = {node: set(indices) for node, indices in health.holders.items()}
    for index, node in targets.items():
        held.setdefault(node, set()).add(index)
    copies: list[tuple[int, bytes]] = []
    for _ in range(health.n):  # each round lifts the most exposed site by at least one
        losses = site_losses(held, sites)
        worst = min(losses, key=lambda site: (losses[site], site)) if losses else None
        if worst is None or losses[worst] >= health.k:
            break
        outside = {
            i for node, indices in held.items() if site_of(node, sites) != worst for i in indices
        }
        only_there = sorted(
            {i for node, indices in held.items() for i in indices if site_of(node, sites) == worst}
            - outside
        )
        elsewhere = [c for c in pool if site_of(c.node, sites) != worst]
        wanted = only_there[: health.k - losses[worst]]
        if not wanted or not elsewhere:
            break
        chosen = add_holders(
            wanted, elsewhere, {n: sorted(i) for n, i in held.items()}, sites, need
        )
        added = [(i, node) for i, node in chosen.items() if i not in held.get(node, set())]
        if not added:
            break
        for index, node in added:
            held.setdefault(node, set()).add(index)
        copies.extend(added)
    return copies


_ORDER_TAG = b"medvault/repair-order/v1"


def coordinator_order(record_id: bytes, holders: Iterable[bytes]) -> list[bytes]:
    """The record's holders in coordinator order: rendezvous hashing keyed by the record,
    so each identity is first for its fair share of records only (ties: by key)."""

    def weight(node: bytes) -> tuple[bytes, bytes]:
        digest = hashlib.blake2b(record_id + node, digest_size=32, key=_ORDER_TAG).digest()
        return digest, node

    return sorted(set(holders), key=weight)


def coordinator_turn(unhealthy_for: float, deadline: float) -> int:
    """Whose turn it is, as a rank (before wrapping): one more per deadline passed."""
    if not deadline > 0:
        raise ValueError(f"a coordinator deadline is positive, got {deadline}")
    if math.isinf(deadline) or not unhealthy_for > 0:
        return 0
    return int(unhealthy_for // deadline)


def coordinator(
    health: RecordHealth, unhealthy_for: float = 0.0, deadline: float = math.inf
) -> bytes | None:
    """The live holder that repairs this record now (None: no live holder).

    `unhealthy_for`: seconds the asking node has seen the record unhealthy but
    repairable (0: just now, or healthy); the rank-r holder takes over after r
    `deadline`s, wrapping around to the first after the last.
    """
    order = coordinator_order(health.record_id, health.holders)
    if not order:
        return None
    return order[coordinator_turn(unhealthy_for, deadline) % len(order)]


def passed_over(
    health: RecordHealth, unhealthy_for: float = 0.0, deadline: float = math.inf
) -> bytes | None:
    """The holder whose turn ended without the record becoming healthy, when the turn
    has moved on (None: still the first turn, or the only holder's turn again)."""
    order = coordinator_order(health.record_id, health.holders)
    turn = coordinator_turn(unhealthy_for, deadline)
    if not order or turn == 0:
        return None
    previous = order[(turn - 1) % len(order)]
    return None if previous == order[turn % len(order)] else previous
