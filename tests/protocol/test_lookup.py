"""The lookup machine driven by hand, and a property: it always terminates."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.dht.contact import Contact, distance
from protocol.dht.lookup import Finished, Lookup, Waiting


def population(seed: int, size: int) -> list[Contact]:
    rnd = random.Random(seed)
    return [Contact(rnd.randbytes(32), f"10.0.0.2:{i}") for i in range(size)]


def closest(contacts: list[Contact], target: bytes, k: int) -> list[Contact]:
    return sorted(contacts, key=lambda c: distance(c.node_id, target))[:k]


def test_alpha_queries_then_waiting_then_finished() -> None:
    nodes = population(1, 50)
    target = random.Random(9).randbytes(20)
    lookup = Lookup(target, nodes[:10], k=5, alpha=3, timeout=2)
    first = lookup.step(now=0)
    assert isinstance(first, list) and len(first) == 3
    assert lookup.step(now=0.5) == Waiting(2.0)
    for query in first:
        lookup.on_response(query.contact, [])
    second = lookup.step(now=1)
    assert isinstance(second, list) and len(second) == 2  # the rest of the 5 closest
    for query in second:
        lookup.on_response(query.contact, [])
    done = lookup.step(now=1.5)
    assert isinstance(done, Finished)
    assert done.closest == closest(nodes[:10], target, 5)
    assert done.queries == 5 and done.failures == 0


def test_silent_peer_costs_one_timeout_only() -> None:
    nodes = population(2, 30)
    target = random.Random(3).randbytes(20)
    lookup = Lookup(target, nodes, k=3, alpha=3, timeout=2, attempts=1)
    silent = None
    now = 0.0
    while True:
        step = lookup.step(now)
        if isinstance(step, Finished):
            break
        if isinstance(step, Waiting):
            now = step.deadline  # only the silent peer is outstanding
            continue
        for query in step:
            if silent is None:
                silent = query.contact  # never answers
            else:
                lookup.on_response(query.contact, [])
    assert now == 2.0
    assert silent not in step.closest and step.failures == 1
    assert len(step.closest) == 3


def test_late_answer_after_timeout_is_ignored() -> None:
    nodes = population(3, 10)
    lookup = Lookup(nodes[0].node_id, nodes[1:4], k=3, alpha=1, timeout=1, attempts=1)
    first = lookup.step(0)
    assert isinstance(first, list)
    late = first[0].contact
    queried = [late]
    now = 5.0  # past the first query's deadline
    while not isinstance(step := lookup.step(now), Finished):
        assert isinstance(step, list)
        for query in step:
            queried.append(query.contact)
            lookup.on_response(query.contact, [])
            lookup.on_response(late, nodes[4:])  # too late: nothing learned from it
    assert not set(queried) & set(nodes[4:])
    assert late not in step.closest and step.failures == 1


def test_a_lost_query_is_asked_again_and_the_peer_counts() -> None:
    nodes = population(5, 12)
    target = nodes[0].node_id
    lookup = Lookup(target, nodes[1:], k=3, alpha=1, timeout=1, attempts=2)
    asked: dict[Contact, int] = {}
    lost_once: set[Contact] = set()
    silent = closest(nodes[1:], target, 1)[0]
    now = 0.0
    while not isinstance(step := lookup.step(now), Finished):
        if isinstance(step, Waiting):
            now = step.deadline
            continue
        for query in step:
            asked[query.contact] = asked.get(query.contact, 0) + 1
            if query.contact is silent:
                continue  # never answers
            if query.contact not in lost_once:
                lost_once.add(query.contact)  # the first message to each peer is lost
                continue
            lookup.on_response(query.contact, [])
    assert asked[silent] == 2  # two attempts, then given up
    assert step.closest == closest(nodes[1:], target, 4)[1:]
    assert all(count == 2 for count in asked.values())


def test_a_stale_timeout_report_does_not_fail_the_retry() -> None:
    nodes = population(6, 5)
    lookup = Lookup(nodes[0].node_id, nodes[1:2], k=1, alpha=1, timeout=1, attempts=2)
    (first,) = lookup.step(0)  # type: ignore[misc]
    (retry,) = lookup.step(1)  # type: ignore[misc]  # step expired attempt 1 and retried
    assert retry.contact == first.contact and retry.deadline == 2
    lookup.on_timeout(first.contact, first.deadline)  # the shell reports attempt 1 late
    lookup.on_response(retry.contact, [])
    done = lookup.step(1.5)
    assert isinstance(done, Finished) and done.closest == [first.contact]


def test_stop_finishes_early_and_own_id_is_never_queried() -> None:
    nodes = population(4, 20)
    lookup = Lookup(nodes[0].node_id, nodes, k=5, alpha=2, own_id=nodes[0].node_id)
    queries = lookup.step(0)
    assert isinstance(queries, list) and nodes[0] not in [q.contact for q in queries]
    lookup.stop()
    done = lookup.step(0)
    assert isinstance(done, Finished) and done.stopped_early


@settings(max_examples=60)
@given(st.integers(0, 2**32), st.integers(1, 120), st.floats(0, 0.5), st.integers(1, 20))
def test_lookups_terminate_and_find_the_true_closest_live(
    seed: int, size: int, silent_share: float, k: int
) -> None:
    """Responders name the k closest of all nodes (some silent) and of the live
    ones, as a routing table holding live and not-yet-evicted dead contacts
    would: the lookup ends, and finds exactly the k closest live nodes."""
    rnd = random.Random(seed)
    nodes = population(seed, size)
    silent = {c.node_id for c in nodes if rnd.random() < silent_share}
    target = rnd.randbytes(20)
    seeds = rnd.sample(nodes, min(3, size))
    lookup = Lookup(target, seeds, k=k, alpha=3, timeout=1)
    now, steps = 0.0, 0
    while True:
        steps += 1
        assert steps < 10 * size + 10, "lookup did not terminate"
        step = lookup.step(now)
        if isinstance(step, Finished):
            break
        if isinstance(step, Waiting):
            now = step.deadline
            continue
        for query in step:
            if query.contact.node_id in silent:
                continue
            others = [c for c in nodes if c.node_id != query.contact.node_id]
            live_others = [c for c in others if c.node_id not in silent]
            lookup.on_response(
                query.contact, closest(others, target, k) + closest(live_others, target, k)
            )
    live = [c for c in nodes if c.node_id not in silent]
    if all(seed.node_id in silent for seed in seeds):
        assert step.closest == []  # nobody answered: nothing can be learned
    else:
        assert step.closest == closest(live, target, k)
