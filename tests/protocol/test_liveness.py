"""Eviction after failures, decided without trio."""

from __future__ import annotations

from protocol.dht.liveness import Evict, Liveness

A, B = b"a" * 20, b"b" * 20


def test_garbage_evicts_at_once() -> None:
    assert Liveness(3).failed(A, sent_at=1.0, garbage=True) == Evict(A, "sent garbage")


def test_silence_evicts_after_max_failures_when_others_answer() -> None:
    live = Liveness(2)
    assert live.failed(A, sent_at=1.0) is None
    live.heard(B, 2.0)  # another peer answered after A's first failing query went out
    assert live.failed(A, sent_at=3.0) == Evict(A, "failed 2 times")
    assert len(live) == 0


def test_a_node_that_hears_nobody_keeps_its_contacts() -> None:
    live = Liveness(2)
    live.heard(B, 0.5)  # before the failures began: says nothing about them
    for sent_at in range(1, 50):
        assert live.failed(A, sent_at=float(sent_at)) is None
    live.heard(B, 60.0)  # the network is back: the next failure counts
    assert live.failed(A, sent_at=61.0) == Evict(A, "failed 50 times")


def test_an_answer_clears_the_count() -> None:
    live = Liveness(2)
    live.heard(B, 0.0)
    live.failed(A, sent_at=1.0)
    live.heard(A, 2.0)
    assert live.failed(A, sent_at=3.0) is None  # one failure since it last answered


def test_the_oldest_contact_is_evicted_only_if_others_answer_meanwhile() -> None:
    live = Liveness(2)
    assert live.ping_failed(A, sent_at=5.0) is None  # nobody heard since the ping: maybe us
    live.heard(B, 6.0)
    assert live.ping_failed(A, sent_at=5.0) == Evict(A, "did not answer a liveness ping")


def test_failure_counts_are_bounded() -> None:
    live = Liveness(5, max_tracked=10)
    for i in range(10_000):
        live.failed(i.to_bytes(20, "big"), sent_at=float(i))
    assert len(live) == 10
