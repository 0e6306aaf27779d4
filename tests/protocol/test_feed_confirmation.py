"""A node writes its own feed only once peers showed they know no more of it."""

from __future__ import annotations

from protocol.ledger.book import Head
from protocol.ledger.confirm import FeedConfirmation
from protocol.ledger.messages import FeedHead

ME, OTHER = b"m" * 32, b"o" * 32
P1, P2, P3 = b"1" * 32, b"2" * 32, b"3" * 32


def head(author: bytes, seq: int) -> FeedHead:
    return FeedHead(author, seq, seq, b"t" * 16)


def test_two_peers_that_know_no_more_confirm() -> None:
    gate = FeedConfirmation(ME)
    ours = Head(5, 5, b"t" * 16)
    assert not gate.heard(P1, [head(ME, 5), head(OTHER, 9)], ours, peers_known=7)
    assert not gate.heard(P1, [head(ME, 5)], ours, peers_known=7)  # the same peer again
    assert gate.heard(P2, [head(OTHER, 1)], ours, peers_known=7)  # never saw our feed
    assert gate.confirmed


def test_a_peer_that_knows_more_of_our_feed_confirms_nothing() -> None:
    gate = FeedConfirmation(ME)
    restored = Head(3, 3, b"t" * 16)  # an older backup
    assert not gate.heard(P1, [head(ME, 5)], restored, peers_known=2)
    assert not gate.heard(P2, [head(ME, 5)], restored, peers_known=2)
    caught_up = Head(5, 5, b"t" * 16)  # gossip pulled 4 and 5
    assert not gate.heard(P1, [head(ME, 5)], caught_up, peers_known=2)
    assert gate.heard(P2, [head(ME, 5)], caught_up, peers_known=2)


def test_a_fork_a_peer_knows_of_is_more_than_we_hold() -> None:
    gate = FeedConfirmation(ME)
    ours = Head(5, 5, b"t" * 16)
    forked = FeedHead(ME, 5, 6, b"u" * 16)  # same top seq, one entry more: a fork
    assert not gate.heard(P1, [forked], ours, peers_known=1)


def test_a_node_with_one_peer_needs_one_and_the_operator_can_vouch() -> None:
    gate = FeedConfirmation(ME)
    assert gate.heard(P3, [], None, peers_known=1)
    alone = FeedConfirmation(ME)
    assert not alone.confirmed
    alone.trust_local()
    assert alone.heard(P1, [head(ME, 99)], None, peers_known=0)
