"""Which node holds which shard index of a record: sites first, then nodes.

Candidates come ordered by XOR distance to the record's key (closest first).
Each of the n indices goes, in turn, to the candidate that minimises
(its site already holds n - k indices, it already holds one, indices at
its site, indices on it, its distance rank). So: when the candidates' sites
can hold n indices with at most n - k on each (`site_loss_avoidable`), no
site gets more, and losing any one hospital leaves k; within that, every
index goes to a distinct node while one is left (losing any node costs one
index), the sites as evenly as possible; among equals the closest node
wins. With fewer candidates than n, nodes take several indices, as evenly
as possible. A candidate without a site is a site of its own.

Repair uses `add_holders`: new indices go only to candidates that hold
nothing of the record, while any such candidate remains.

Free space: a candidate that said how much room it has (`free`) and has
less than `need` bytes (what one shard index of the record takes) is used
only when no candidate with room is left: a node that would refuse is no
holder.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

N = TypeVar("N", bound=Hashable)


@dataclass(frozen=True)
class Candidate(Generic[N]):
    node: N
    site: str
    free: int | None = None  # bytes of room it reported (None: unknown)


def site_loss_avoidable(n: int, k: int, site_count: int) -> bool:
    """Whether n indices fit on `site_count` sites with at most n - k on any one."""
    return site_count >= 2 and n - math.ceil(n / site_count) >= k


def _site_cap(n: int, k: int | None, candidates: Sequence[Candidate[N]]) -> int:
    """Most indices one site may take: n - k where the sites allow it, else n."""
    sites = {_site(c) for c in candidates}
    return n - k if k is not None and site_loss_avoidable(n, k, len(sites)) else n


def _site(candidate: Candidate[N]) -> str:
    return candidate.site or f"node:{candidate.node!r}"


def with_room(candidates: Sequence[Candidate[N]], need: int) -> list[Candidate[N]]:
    """The candidates with room for `need` bytes (all of them if none has)."""
    roomy = [c for c in candidates if c.free is None or c.free >= need]
    return roomy or list(candidates)


def place(
    n: int, candidates: Sequence[Candidate[N]], need: int = 0, k: int | None = None
) -> list[N]:
    """`n` assignments (index i -> node) from candidates ordered closest first.

    `k`: the record's k, for the site cap (None: no cap, sites only balanced).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not candidates:
        raise ValueError("no candidate nodes to place shards on")
    pool = with_room(candidates, need)
    return _assign(n, pool, Counter(), Counter(), cap=_site_cap(n, k, pool))


def add_holders(
    missing: Sequence[int],
    candidates: Sequence[Candidate[N]],
    held: Mapping[N, Sequence[int]],
    sites: Mapping[N, str],
    need: int = 0,
) -> dict[int, N]:
    """Targets for the `missing` indices of a record; `held` says what live nodes hold.

    Candidates holding nothing of the record come first (closest first); only
    when none is left do holders take another index, still balancing sites.
    """
    if not candidates:
        raise ValueError("no candidate nodes to repair onto")
    candidates = with_room(candidates, need)
    per_node = Counter({node: len(indices) for node, indices in held.items() if indices})
    per_site: Counter[str] = Counter()
    for node, count in per_node.items():
        per_site[sites.get(node) or f"node:{node!r}"] += count
    fresh = [c for c in candidates if c.node not in per_node]
    pool = fresh if len(fresh) >= len(missing) else list(candidates)
    chosen = _assign(
        len(missing), pool, per_site, per_node, cap=len(missing) + sum(per_site.values())
    )
    return dict(zip(missing, chosen, strict=True))


def _assign(
    count: int,
    candidates: Sequence[Candidate[N]],
    per_site: Counter[str],
    per_node: Counter[N],
    cap: int,
) -> list[N]:
    chosen = []
    for _ in range(count):
        best = min(
            range(len(candidates)),
            key=lambda rank: (
                per_site[_site(candidates[rank])] >= cap,
                per_node[candidates[rank].node] > 0,
                per_site[_site(candidates[rank])],
                per_node[candidates[rank].node],
                rank,
            ),
        )
        pick = candidates[best]
        per_site[_site(pick)] += 1
        per_node[pick.node] += 1
        chosen.append(pick.node)
    return chosen


def spread(holders: Mapping[int, Sequence[N]]) -> dict[int, N]:
    """One distinct holder per index, for as many indices as possible.

    `holders` maps each shard index to the nodes holding it. The result is a
    maximum matching (each node used once): its size is the number of
    distinct hosts the record can count on, and the held indices left out of
    it are crowded onto nodes that already stand for another index, so repair
    copies them to fresh nodes. Deterministic: indices in order, holders in
    the order given.
    """
    owner: dict[N, int] = {}

    def claim(index: int, seen: set[N]) -> bool:
        for node in holders[index]:
            if node in seen:
                continue
            seen.add(node)
            if node not in owner or claim(owner[node], seen):
                owner[node] = index
                return True
        return False

    for index in sorted(holders):
        claim(index, set())
    return {index: node for node, index in owner.items()}
