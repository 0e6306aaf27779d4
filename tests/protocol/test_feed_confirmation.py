"""A node writes its own feed only once peers showed they know no more of it, and takes
shards for leftovers only once peers showed no feed beyond its ledger."""

from __future__ import annotations

from protocol.ledger.book import Head
from protocol.ledger.confirm import FeedConfirmation
from protocol.ledger.messages import FeedHead

ME, OTHER = b"m" * 32, b"o" * 32
P1, P2, P3 = b"1" * 32, b"2" * 32, b"3" * 32


def head(author: bytes, seq: int, count: int | None = None) -> FeedHead:
    return FeedHead(author, seq, count or seq, b"t" * 16)


def held(**feeds: int) -> dict[bytes, Head]:
    authors = {"me": ME, "other": OTHER}
    return {authors[name]: Head(seq, seq, b"t" * 16) for name, seq in feeds.items()}


def test_two_peers_that_know_no_more_confirm() -> None:
    gate = FeedConfirmation(ME)
    ours = held(me=5, other=9)
    assert not gate.heard(P1, [head(ME, 5), head(OTHER, 9)], ours, peers_known=7)
    assert not gate.heard(P1, [head(ME, 5)], ours, peers_known=7)  # the same peer again
    assert gate.heard(P2, [head(OTHER, 1)], ours, peers_known=7)  # never saw our feed
    assert gate.confirmed and gate.caught_up


def test_a_peer_that_knows_more_of_our_feed_confirms_nothing() -> None:
    gate = FeedConfirmation(ME)
    restored = held(me=3)  # an older backup
    assert not gate.heard(P1, [head(ME, 5)], restored, peers_known=2)
    assert not gate.heard(P2, [head(ME, 5)], restored, peers_known=2)
    caught_up = held(me=5)  # gossip pulled 4 and 5
    assert not gate.heard(P1, [head(ME, 5)], caught_up, peers_known=2)
    assert gate.heard(P2, [head(ME, 5)], caught_up, peers_known=2)


def test_a_fork_a_peer_knows_of_is_more_than_we_hold() -> None:
    gate = FeedConfirmation(ME)
    forked = head(ME, 5, count=6)  # same top seq, one entry more: a fork
    assert not gate.heard(P1, [forked], held(me=5), peers_known=1)


def test_caught_up_needs_every_feed_not_only_ours() -> None:
    gate = FeedConfirmation(ME)
    ours = held(me=5, other=2)
    for peer in (P1, P2):  # they know more of another hospital's feed
        gate.heard(peer, [head(ME, 5), head(OTHER, 7)], ours, peers_known=5)
    assert standing(gate) == (True, False)
    ours = held(me=5, other=7)
    gate.heard(P1, [head(ME, 5), head(OTHER, 7)], ours, peers_known=5)
    gate.heard(P3, [head(OTHER, 7)], ours, peers_known=5)
    assert gate.caught_up


def test_a_fresh_peer_vouches_for_nothing_we_hold() -> None:
    gate = FeedConfirmation(ME)
    for peer in (P1, P2, P3):
        assert not gate.heard(peer, [], held(me=5), peers_known=3)
    assert not gate.caught_up
    new_network = FeedConfirmation(ME)  # nobody holds anything yet: nothing to lose
    new_network.heard(P1, [], {}, peers_known=2)
    assert new_network.heard(P2, [], {}, peers_known=2) and new_network.caught_up


def test_a_node_with_one_peer_needs_one_and_the_operator_can_vouch() -> None:
    gate = FeedConfirmation(ME)
    assert gate.heard(P3, [head(OTHER, 1)], {}, peers_known=1)
    alone = FeedConfirmation(ME)
    assert standing(alone) == (False, False)
    alone.trust_local()
    assert standing(alone) == (True, True)


def standing(gate: FeedConfirmation) -> tuple[bool, bool]:
    return gate.confirmed, gate.caught_up
