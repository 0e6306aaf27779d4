from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.records.placement import (
    Candidate,
    add_holders,
    place,
    site_loss_avoidable,
    spread,
)


def candidates(sites: list[str]) -> list[Candidate[str]]:
    return [Candidate(f"node{i}", site) for i, site in enumerate(sites)]


def test_every_node_its_own_site_takes_the_n_closest_in_order() -> None:
    pool = candidates([f"s{i}" for i in range(12)])
    assert place(8, pool) == [f"node{i}" for i in range(8)]


def test_three_hospitals_share_indices_evenly_on_distinct_nodes() -> None:
    pool = candidates(["a", "b", "c"] * 3)
    chosen = place(8, pool)
    sites = Counter(
        dict(zip((c.node for c in pool), (c.site for c in pool), strict=True))[n] for n in chosen
    )
    assert sorted(sites.values()) == [2, 3, 3]
    assert len(set(chosen)) == 8


def test_a_lone_node_site_takes_what_losing_the_other_site_needs() -> None:
    # k = 4 of n = 8: losing either site must leave 4, so "big" takes at most 4.
    pool = [Candidate("alone", "small"), *candidates(["big"] * 10)]
    chosen = place(8, pool, k=4)
    assert chosen.count("alone") == 4
    assert len(set(chosen) - {"alone"}) == 4
    # Where two sites cannot both keep k (k = 5), distinct nodes come first.
    chosen = place(8, pool, k=5)
    assert len(set(chosen)) == 8 and chosen.count("alone") == 1


def test_fewer_nodes_than_n_spread_evenly() -> None:
    assert sorted(Counter(place(8, candidates(["a", "b", "c"]))).values()) == [2, 3, 3]
    with pytest.raises(ValueError, match="no candidate"):
        place(8, [])
    with pytest.raises(ValueError, match="at least 1"):
        place(0, candidates(["a"]))


@given(
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=30),
    st.integers(1, 20),
    st.integers(1, 20),
)
def test_site_cap_then_distinct_nodes_then_balance(sites: list[str], n: int, k: int) -> None:
    k = min(k, n)
    pool = candidates(sites)
    site_of = {c.node: c.site for c in pool}
    chosen = place(n, pool, k=k)
    assert len(chosen) == n
    per_site = Counter(site_of[node] for node in chosen)
    all_sites = set(sites)
    if site_loss_avoidable(n, k, len(all_sites)):  # losing any one site leaves k
        assert max(per_site.values()) <= n - k
    else:  # as many distinct nodes as there are
        assert len(set(chosen)) == min(n, len(pool))
    per_node = Counter(chosen)
    for site in all_sites:  # within a site, nodes share evenly
        counts = [per_node[c.node] for c in pool if c.site == site]
        assert max(counts) - min(counts) <= 1


@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=30), st.integers(1, 20))
def test_without_k_distinct_nodes_first_then_sites_balanced(sites: list[str], n: int) -> None:
    pool = candidates(sites)
    site_of = {c.node: c.site for c in pool}
    chosen = place(n, pool)
    assert len(set(chosen)) == min(n, len(pool))
    if n <= len(pool):  # among distinct nodes, no site could have been spared one more
        per_site = Counter(site_of[node] for node in chosen)
        for site in set(sites):
            free = [c for c in pool if c.site == site and c.node not in chosen]
            if free:
                assert max(per_site.values()) - per_site[site] <= 1


@given(st.integers(1, 8), st.integers(0, 12), st.integers(1, 8))
def test_repair_prefers_nodes_holding_nothing(holders: int, spare: int, missing: int) -> None:
    pool = candidates([f"s{i}" for i in range(holders + spare)])
    current = {pool[i].node: [i] for i in range(holders)}
    lost = list(range(holders, holders + missing))
    targets = add_holders(lost, pool, current, {c.node: c.site for c in pool})
    assert sorted(targets) == lost
    empty = [c.node for c in pool[holders:]]
    used_empty = [node for node in targets.values() if node in empty]
    if spare >= missing:
        assert len(set(targets.values())) == missing and set(targets.values()) <= set(empty)
    else:
        assert set(empty) <= set(used_empty)  # every empty node took one first


def test_a_second_holder_of_an_index_is_not_taken_for_an_empty_node() -> None:
    pool = candidates(["a", "b", "c", "d"])
    held = {"node0": [0], "node1": [0], "node2": [1]}
    targets = add_holders([2], pool, held, {c.node: c.site for c in pool})
    assert targets == {2: "node3"}


def test_spread_finds_distinct_holders_through_reassignment() -> None:
    # Greedy would give index 0 to "a" and leave index 1 without a distinct host.
    matched = spread({0: ["a", "b"], 1: ["a"]})
    assert matched == {0: "b", 1: "a"}


def test_spread_leaves_out_indices_crowded_on_one_node() -> None:
    matched = spread({0: ["a"], 1: ["a"], 2: ["b"], 3: []})
    assert len(matched) == 2 and matched[2] == "b" and set(matched) in ({0, 2}, {1, 2})


@given(
    st.dictionaries(
        st.integers(0, 9), st.lists(st.sampled_from("abcdefg"), unique=True), max_size=10
    )
)
def test_spread_is_a_maximum_matching(holders: dict[int, list[str]]) -> None:
    matched = spread(holders)
    assert len(set(matched.values())) == len(matched)
    assert all(node in holders[index] for index, node in matched.items())
    # Maximum: no larger matching exists (brute force over small inputs).
    assert len(matched) == _best(sorted(holders), holders, frozenset())


def _best(indices: list[int], holders: dict[int, list[str]], used: frozenset[str]) -> int:
    if not indices:
        return 0
    first, rest = indices[0], indices[1:]
    best = _best(rest, holders, used)
    for node in holders[first]:
        if node not in used:
            best = max(best, 1 + _best(rest, holders, used | {node}))
    return best


def test_placement_passes_over_nodes_without_room_while_others_have_it() -> None:
    pool = [
        Candidate("full-a", "a", free=10),
        Candidate("roomy-b", "b", free=10_000),
        Candidate("unknown-c", "c"),
    ]
    assert set(place(4, pool, need=1000)) == {"roomy-b", "unknown-c"}
    # Nobody has room: placement still answers (the holders will say no, and the put says so).
    assert place(2, [Candidate("x", "a", free=0), Candidate("y", "b", free=0)], need=5) == [
        "x",
        "y",
    ]
    assert add_holders([3], pool, {"roomy-b": [0]}, {"roomy-b": "b"}, need=1000) == {3: "unknown-c"}
