"""Judging a finished put: accepted, degraded, and why."""

from __future__ import annotations

import pytest

from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound
from protocol.records.verdict import judge_put, site_loss_avoidable, survives_site_loss

RECORD = b"r" * 32


def node(i: int) -> bytes:
    return bytes([i]) * 32


def health(k: int, n: int, placed: dict[int, tuple[int, ...]]) -> RecordHealth:
    answers = [(node(i), HoldingsFound(indices, (), ())) for i, indices in placed.items()]
    return RecordHealth.of(RECORD, k, n, answers)


@pytest.mark.parametrize(
    ("n", "k", "sites", "avoidable"),
    [(8, 4, 2, True), (8, 4, 1, False), (5, 3, 2, False), (5, 3, 3, True), (4, 4, 9, False)],
)
def test_when_losing_a_site_can_be_avoided(n: int, k: int, sites: int, avoidable: bool) -> None:
    assert site_loss_avoidable(n, k, sites) is avoidable


def test_a_full_put_spread_over_sites_is_not_degraded() -> None:
    placed = health(3, 5, {i: (i,) for i in range(5)})
    sites = {node(i): "ab"[i % 2] if i < 4 else "c" for i in range(5)}
    verdict = judge_put(placed, sites, happy=4, network_sites=3)
    assert (verdict.holders, verdict.sites, verdict.acceptable, verdict.degraded) == (
        5,
        3,
        True,
        False,
    )
    assert survives_site_loss(placed, sites)


def test_fewer_holders_than_n_is_degraded_but_acceptable_from_happy() -> None:
    placed = health(3, 5, {1: (0,), 2: (1,), 3: (2,), 4: (3,)})
    sites = {node(i): f"s{i}" for i in range(1, 5)}
    verdict = judge_put(placed, sites, happy=4, network_sites=4)
    assert verdict.acceptable and verdict.degraded
    assert verdict.reasons == ("4 of 5 shards on distinct nodes",)
    assert not judge_put(placed, sites, happy=5, network_sites=4).acceptable


def test_too_much_on_one_site_is_degraded_only_where_the_network_could_spread() -> None:
    placed = health(3, 5, {i: (i,) for i in range(5)})
    lopsided = {node(i): "a" if i < 3 else "b" for i in range(5)}
    verdict = judge_put(placed, lopsided, happy=4, network_sites=3)
    assert verdict.degraded and "losing one of them loses the record" in verdict.reasons[0]
    # Two sites cannot hold 5 indices with at most 2 on each: not the put's fault.
    assert not judge_put(placed, lopsided, happy=4, network_sites=2).degraded
