"""Record health, repair planning and the repair coordinator, without trio or peers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.records.health import RecordHealth, counting
from protocol.records.messages import HoldingsFound
from protocol.records.placement import Candidate
from protocol.records.repair import plan_repair, repair_read_needed, triage

RECORD = b"r" * 32


def key(i: int) -> bytes:
    return bytes([i]) * 32


def health(
    k: int, n: int, held: dict[int, tuple[int, ...]], **extra: tuple[int, ...]
) -> RecordHealth:
    answers = [(key(node), HoldingsFound(indices, (), ())) for node, indices in held.items()]
    for name, indices in extra.items():  # corrupt_<node>=(...)
        node = int(name.split("_")[1])
        answers.append((key(node), HoldingsFound(indices, (), indices)))
    return RecordHealth.of(RECORD, k, n, answers)


def pool(*nodes: int, site: str | None = None) -> list[Candidate[bytes]]:
    return [Candidate(key(i), site or f"site-{i}") for i in nodes]


def sites_of(*nodes: int) -> dict[bytes, str]:
    return {key(i): f"site-{i}" for i in nodes}


def test_health_counts_distinct_hosts_missing_and_crowded() -> None:
    h = health(2, 4, {1: (0, 1), 2: (2,)})
    assert h.held == {0, 1, 2}
    assert h.missing == (3,)
    assert h.distinct_hosts == 2 and h.crowded == (1,)  # node 1 stands for one index only
    assert h.readable and not h.healthy


def test_corrupt_indices_do_not_count() -> None:
    h = health(2, 3, {1: (0,)}, corrupt_2=(1,))
    assert h.held == {0} and not h.readable
    assert h.corrupt == {key(2): (1,)}


def test_triage() -> None:
    assert triage(health(2, 2, {1: (0,), 2: (1,)})) == "healthy"
    assert triage(health(2, 3, {1: (0,)})) == (
        "unrecoverable for now: 1 of 2 needed shard indices reachable"
    )
    assert triage(health(2, 3, {1: (0,), 2: (1,)})) is None


def test_missing_indices_go_to_fresh_nodes_at_new_sites_first() -> None:
    h = health(2, 4, {1: (0,), 2: (1,)})
    plan = plan_repair(h, pool(1, 2, 3, 4, 5), sites_of(1, 2, 3, 4, 5))
    assert plan.targets == {2: key(3), 3: key(4)}


def test_crowded_indices_move_only_while_fresh_nodes_remain() -> None:
    h = health(2, 4, {1: (0, 1, 2, 3)})
    # Three fresh nodes for no missing index: three of the four crowded indices move.
    plan = plan_repair(h, pool(1, 2, 3, 4), sites_of(1, 2, 3, 4))
    assert sorted(plan.targets.values()) == [key(2), key(3), key(4)]
    assert len(set(plan.targets)) == 3
    # No fresh node at all: nothing to do, and the plan says why.
    stuck = plan_repair(h, pool(1), sites_of(1))
    assert stuck.targets == {} and "no node holding none" in stuck.note


def test_nothing_is_planned_for_a_healthy_or_unreadable_record() -> None:
    assert plan_repair(health(1, 1, {1: (0,)}), pool(2), sites_of(1, 2)).note == "healthy"
    assert plan_repair(health(2, 3, {}), pool(2), sites_of(2)).note.startswith("unrecoverable")


@given(
    st.dictionaries(st.integers(1, 12), st.sets(st.integers(0, 7), min_size=1), max_size=8),
    st.lists(st.integers(1, 20), min_size=1, max_size=12, unique=True),
)
def test_a_plan_never_gives_a_node_an_index_it_holds_or_an_index_twice(
    held: dict[int, set[int]], candidates: list[int]
) -> None:
    h = health(2, 8, {node: tuple(sorted(indices)) for node, indices in held.items()})
    plan = plan_repair(h, pool(*candidates), sites_of(*candidates, *held))
    for index, node in plan.targets.items():
        assert index not in h.holders.get(node, ())
        assert index in h.missing or index in h.crowded
    assert bool(plan.targets) != bool(plan.note)


def site_health(
    k: int, n: int, held: dict[int, tuple[int, ...]], sites: dict[bytes, str], network: int
) -> RecordHealth:
    answers = [(key(node), HoldingsFound(indices, (), ())) for node, indices in held.items()]
    return RecordHealth.of(RECORD, k, n, answers, sites=sites, network_sites=network)


def test_a_record_on_one_site_of_three_gets_copies_on_the_others() -> None:
    # Put while sites b and c were down: five distinct hosts, all at a.
    sites = {key(i): "a" for i in range(1, 6)} | {key(6): "b", key(7): "b", key(8): "c"}
    h = site_health(3, 5, {i: (i - 1,) for i in range(1, 6)}, sites, network=3)
    assert h.distinct_hosts == 5 and not h.site_safe and not h.healthy
    candidates = [Candidate(key(i), sites[key(i)]) for i in range(1, 9)]
    plan = plan_repair(h, candidates, sites)
    assert plan.targets == {}
    assert len(plan.copies) == 3  # losing a must leave k = 3 indices elsewhere
    assert {sites[node] for _, node in plan.copies} == {"b", "c"}
    after = site_health(
        3,
        5,
        {**{i: (i - 1,) for i in range(1, 6)}, **_as_held(plan.copies)},
        sites,
        network=3,
    )
    assert after.site_safe and after.healthy
    assert plan_repair(after, candidates, sites).note == "healthy"


def test_site_copies_are_skipped_where_the_network_has_too_few_sites() -> None:
    sites = {key(i): "a" if i < 4 else "b" for i in range(1, 7)}
    h = site_health(3, 5, {i: (i - 1,) for i in range(1, 6)}, sites, network=2)
    assert h.site_safe and h.healthy  # 5 indices cannot spread over 2 sites with 2 each


def test_no_copy_without_a_candidate_on_another_site() -> None:
    sites = {key(i): "a" for i in range(1, 6)} | {key(9): "b", key(10): "c"}
    h = site_health(3, 5, {i: (i - 1,) for i in range(1, 6)}, sites, network=3)
    plan = plan_repair(h, [Candidate(key(i), "a") for i in range(1, 6)], sites)
    assert not plan.assignments() and "another site" in plan.note


def test_copies_prefer_nodes_with_room() -> None:
    sites = {key(i): "a" for i in range(1, 6)} | {key(6): "b", key(7): "b", key(8): "c"}
    h = site_health(3, 5, {i: (i - 1,) for i in range(1, 6)}, sites, network=3)
    candidates = [Candidate(key(i), "a") for i in range(1, 6)] + [
        Candidate(key(6), "b", free=10),
        Candidate(key(7), "b", free=10_000),
        Candidate(key(8), "c", free=10_000),
    ]
    plan = plan_repair(h, candidates, sites, need=1000)
    assert key(6) not in {node for _, node in plan.copies}


def _as_held(pairs: list[tuple[int, bytes]]) -> dict[int, tuple[int, ...]]:
    held: dict[int, tuple[int, ...]] = {}
    for index, node in pairs:
        held[node[0]] = (*held.get(node[0], ()), index)
    return held


def test_repair_reads_are_served_only_while_the_record_needs_repair() -> None:
    whole = health(3, 5, {i: (i - 1,) for i in range(1, 6)})
    assert not repair_read_needed(whole, key(1), 0, None)
    # A holder gone: every proven holder may read to repair it.
    lost = health(3, 5, {i: (i - 1,) for i in range(1, 5)})
    assert repair_read_needed(lost, key(1), 0, None)
    # The asker hid its own claim: its proof counts the index, so nothing is missing.
    hiding = health(3, 5, {i: (i - 1,) for i in range(2, 6)})
    assert not hiding.healthy and not repair_read_needed(hiding, key(1), 0, None)
    assert counting(hiding, key(1), 0, None).holders == whole.holders
    # ... but proving an index someone else holds does not fill a real gap.
    assert repair_read_needed(lost, key(9), 0, None)
    # Five hosts on one site of a network of three: site copies are repair too.
    sites = {key(i): "a" for i in range(1, 6)}
    one_site = site_health(3, 5, {i: (i - 1,) for i in range(1, 6)}, sites, network=3)
    assert repair_read_needed(one_site, key(1), 0, "a")
    spread_out = {key(1): "a", key(2): "a", key(3): "b", key(4): "b", key(5): "c"}
    safe = site_health(3, 5, {i: (i - 1,) for i in range(1, 6)}, spread_out, network=3)
    assert not repair_read_needed(safe, key(5), 4, "c")
