"""Judging a finished put: accepted, degraded, and why."""

from __future__ import annotations

import pytest

from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound
from protocol.records.placement import site_loss_avoidable
from protocol.records.verdict import judge_put

RECORD = b"r" * 32


def node(i: int) -> bytes:
    return bytes([i]) * 32


def health(
    k: int,
    n: int,
    placed: dict[int, tuple[int, ...]],
    sites: dict[bytes, str] | None = None,
    network_sites: int = 0,
) -> RecordHealth:
    answers = [(node(i), HoldingsFound(indices, (), ())) for i, indices in placed.items()]
    return RecordHealth.of(RECORD, k, n, answers, sites=sites, network_sites=network_sites)


@pytest.mark.parametrize(
    ("n", "k", "sites", "avoidable"),
    [(8, 4, 2, True), (8, 4, 1, False), (5, 3, 2, False), (5, 3, 3, True), (4, 4, 9, False)],
)
def test_when_losing_a_site_can_be_avoided(n: int, k: int, sites: int, avoidable: bool) -> None:
    assert site_loss_avoidable(n, k, sites) is avoidable


def test_a_full_put_spread_over_sites_is_not_degraded() -> None:
    sites = {node(i): "ab"[i % 2] if i < 4 else "c" for i in range(5)}
    placed = health(3, 5, {i: (i,) for i in range(5)}, sites, 3)
    verdict = judge_put(placed, happy=4)
    assert (verdict.holders, verdict.sites, verdict.acceptable, verdict.degraded) == (
        5,
        3,
        True,
        False,
    )
    assert placed.site_safe and placed.site_losses == {"a": 3, "b": 3, "c": 4}


def test_fewer_holders_than_n_is_degraded_but_acceptable_from_happy() -> None:
    sites = {node(i): f"s{i}" for i in range(1, 5)}
    placed = health(3, 5, {1: (0,), 2: (1,), 3: (2,), 4: (3,)}, sites, 4)
    verdict = judge_put(placed, happy=4)
    assert verdict.acceptable and verdict.degraded
    assert verdict.reasons == ("4 of 5 shards on distinct nodes",)
    assert not judge_put(placed, happy=5).acceptable


def test_too_much_on_one_site_is_degraded_only_where_the_network_could_spread() -> None:
    lopsided = {node(i): "a" if i < 3 else "b" for i in range(5)}
    verdict = judge_put(health(3, 5, {i: (i,) for i in range(5)}, lopsided, 3), happy=4)
    assert verdict.degraded and "losing one of them loses the record" in verdict.reasons[0]
    # Two sites cannot hold 5 indices with at most 2 on each: not the put's fault.
    assert not judge_put(health(3, 5, {i: (i,) for i in range(5)}, lopsided, 2), happy=4).degraded
    # A third site known but down at put time still counts: the put is degraded.
    assert judge_put(health(3, 5, {i: (i,) for i in range(5)}, lopsided, 3), happy=4).degraded


def test_copies_on_other_sites_make_a_record_site_safe() -> None:
    # Index 0 copied from site a to site b: losing a leaves 0, 3, 4 (k = 3) on b.
    lopsided = {node(i): "a" if i < 3 else "b" for i in range(6)}
    placed = health(3, 5, {0: (0,), 1: (1,), 2: (2,), 3: (3,), 4: (4,), 5: (0,)}, lopsided, 3)
    assert placed.site_losses == {"a": 3, "b": 3} and placed.site_safe and placed.healthy
    # A holder of unknown site is a site of its own.
    alone = health(3, 5, {i: (i,) for i in range(5)}, {}, 3)
    assert alone.site_safe and len(alone.site_losses) == 5
