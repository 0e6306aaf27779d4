"""Read statements wait for the next gossip round's push (node.ledger.gossip): a get's
statement must not land on every holder while they serve that get's blocks."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nacl.signing
import pytest
import trio
import trio.testing

from node.config.gossip import GossipConfig
from node.ledger import gossip as gossip_module
from node.sim.ledger_cluster import GossipCluster, GossipNode
from node.sim.network import LinkModel, SimNetwork, deterministic_scheduling
from protocol.ledger.entries import AccessBody, Entry, RecordBody, derive_record_id
from protocol.records import permit

ROUNDS = GossipConfig(interval=60.0, push_fanout=3)  # pushes arrive in well under a round


@asynccontextmanager
async def cluster_of(
    size: int, config: GossipConfig, seed: int = 5
) -> AsyncIterator[tuple[GossipCluster, random.Random]]:
    rng = random.Random(seed)
    cluster = GossipCluster(SimNetwork(seed, LinkModel()), config, rng)
    with deterministic_scheduling(seed):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery, size)
            await trio.sleep(1)  # past the start's catch-up round and its random offset
            yield cluster, rng
            nursery.cancel_scope.cancel()


async def read_logged(node: GossipNode, rng: random.Random) -> Entry:
    """A record, then a read of it, both written by `node`; the read's entry."""
    owner = node.contact.public_key
    nonce = rng.randbytes(16)
    record_id = derive_record_id(owner, nonce)
    await node.ledger.append(RecordBody(record_id, nonce, rng.randbytes(32), 100, 3, 5, owner))
    await trio.testing.wait_all_tasks_blocked()
    statement = permit.sign(node.identity, record_id, owner, node.ledger.clock_ms(),
                            read_id=rng.randbytes(16))  # fmt: skip
    return await node.ledger.append(AccessBody(record_id, statement))


def holders_of(cluster: GossipCluster, entry: Entry) -> int:
    return sum(entry.hash in n.ledger.book for n in cluster.nodes)


async def test_a_read_statement_is_not_pushed_at_once_but_at_the_next_round(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster_of(5, ROUNDS) as (cluster, rng):
        reader = cluster.nodes[1]
        pushed = reader.gossip.stats.pushed
        read = await read_logged(reader, rng)
        await trio.testing.wait_all_tasks_blocked()
        assert reader.gossip.stats.pushed == pushed + 3  # the record entry to 3 peers, not the read
        assert [e for _, e in reader.gossip._held] == [read]  # waiting for the round
        took = await cluster.wait_for(lambda: holders_of(cluster, read) == 5, limit=200)
        assert took <= 2 * ROUNDS.interval  # the next round pushes it (and pulls)


async def test_a_later_entry_of_the_feed_takes_the_held_statements_along(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster_of(5, ROUNDS) as (cluster, rng):
        reader = cluster.nodes[0]
        read = await read_logged(reader, rng)
        await trio.testing.wait_all_tasks_blocked()
        assert reader.gossip._held
        owner = reader.contact.public_key
        nonce = rng.randbytes(16)
        record_id = derive_record_id(owner, nonce)
        later = await reader.ledger.append(
            RecordBody(record_id, nonce, rng.randbytes(32), 100, 3, 5, owner)
        )
        assert not reader.gossip._held
        # Pushed as one batch in feed order: every peer that got the later entry has
        # the statement before it (no gap in the feed, nothing waits for a round).
        took = await cluster.wait_for(lambda: holders_of(cluster, later) >= 4, limit=200)
        assert took < 5  # by push (fanout 3, then onward), not by a round
        for node in cluster.nodes:
            assert (later.hash in node.ledger.book) <= (read.hash in node.ledger.book)


async def test_a_flood_of_read_statements_holds_a_bounded_number(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member logging reads in bulk (its own or relayed) makes a node hold at most
    MAX_HELD of them; the oldest beyond it are pushed at once, none is lost."""
    monkeypatch.setattr(gossip_module, "MAX_HELD", 4)
    async with cluster_of(3, ROUNDS) as (cluster, rng):
        reader = cluster.nodes[2]
        reads = [await read_logged(reader, rng) for _ in range(3)]
        # Each read_logged also wrote a record entry (which took the held reads along):
        # now hold reads only.
        signer = nacl.signing.SigningKey(rng.randbytes(32))
        record_id = reads[0].record_id
        for _ in range(10):
            now = reader.ledger.clock_ms()
            node = reader.contact.public_key
            statement = permit.sign(signer, record_id, node, now, read_id=rng.randbytes(16))
            await reader.ledger.append(AccessBody(record_id, statement))
            assert len(reader.gossip._held) <= 4
        assert len(reader.gossip._held) == 4
        own = reader.ledger.book.head_entry(reader.contact.public_key)
        assert own is not None
        author = reader.contact.public_key

        def behind_by_four() -> bool:
            heads = [n.ledger.book.head_entry(author) for n in cluster.nodes[:2]]
            return all(h is not None and h.seq == own.seq - 4 for h in heads)

        # The oldest held reads went out at once; the four newest wait for a round.
        took = await cluster.wait_for(behind_by_four, limit=200)
        assert took < 5
