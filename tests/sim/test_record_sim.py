"""Whole nodes (the daemon's assembly) on the simulated network: the research bench's base."""

from __future__ import annotations

import dataclasses
import random

import trio
import trio.testing

from node.config.dht import DhtConfig
from node.config.gossip import GossipConfig
from node.config.settings import NodeConfig
from node.config.storage import StorageConfig
from node.offload import inline_work
from node.sim.network import SimNetwork, deterministic_scheduling
from node.sim.nodes import Member, SimNodes, StoredRecord

SITES = ("north", "south", "east", "west")
INTERVAL = 60.0


def sim_config(k: int = 2, n: int = 4) -> NodeConfig:
    return NodeConfig(
        dht=DhtConfig(k=12, query_timeout=2.0),
        gossip=GossipConfig(interval=5.0),
        storage=StorageConfig(
            k=k, n=n, happy=n, segment_size=2048, call_timeout=5.0, repair_interval=INTERVAL
        ),
    )


async def network(
    nursery: trio.Nursery, seed: int, size: int, site_aware: bool = True
) -> tuple[SimNodes, random.Random]:
    rng = random.Random(seed)
    sim = SimNodes(SimNetwork(seed), sim_config(), rng, site_aware=site_aware)
    for number in range(size):
        await sim.add(nursery, SITES[number % len(SITES)])
    return sim, rng


async def store(sim: SimNodes, rng: random.Random, count: int) -> list[StoredRecord]:
    records = [await sim.put(rng.choice(sim.live()), rng.randbytes(5000)) for _ in range(count)]
    await sim.known_everywhere(records)
    return records


async def test_records_survive_loss_and_the_repair_loop_restores_them(
    autojump_clock: trio.abc.Clock,
) -> None:
    with inline_work():
        async with trio.open_nursery() as nursery:
            sim, rng = await network(nursery, 3, 12)
            records = await store(sim, rng, 6)
            for record in records:
                health = sim.health(record)
                assert health.healthy and health.distinct_hosts == 4
                sites = {m.site for m in sim.holders(record)}
                assert len(sites) == 4  # one index per hospital

            first = sim.holders(records[0])
            for member in first[:2]:  # n - k holders of one record die for good
                sim.fail(member)
            assert sim.health(records[0]).readable and not sim.health(records[0]).healthy
            await trio.sleep(2.5 * INTERVAL)
            for record in records:
                assert sim.health(record).healthy
                assert not {m.index for m in first[:2]} & {m.index for m in sim.holders(record)}
                reader = rng.choice(sim.live())
                assert await sim.read(reader, record, limit=60.0)
            nursery.cancel_scope.cancel()


async def test_a_record_cut_off_below_k_holders_is_unreadable_until_they_return(
    autojump_clock: trio.abc.Clock,
) -> None:
    with inline_work():
        async with trio.open_nursery() as nursery:
            sim, rng = await network(nursery, 4, 10)
            (record,) = await store(sim, rng, 1)
            holders = sim.holders(record)
            outsider = next(m for m in sim.live() if m not in holders)
            for member in holders[:3]:
                sim.disconnect(member)
            assert not sim.health(record).readable
            assert not await sim.read(outsider, record, limit=60.0)
            for member in holders[:3]:
                sim.reconnect(member)
            assert await sim.read(outsider, record, limit=60.0)
            nursery.cancel_scope.cancel()


async def test_site_blind_nodes_are_not_told_their_site(autojump_clock: trio.abc.Clock) -> None:
    with inline_work():
        async with trio.open_nursery() as nursery:
            sim, _ = await network(nursery, 5, 6, site_aware=False)
            labels = {m.node.shards.site for m in sim.members}
            assert len(labels) == 6 and not labels & set(SITES)
            nursery.cancel_scope.cancel()


def placement_of_a_run(seed: int) -> list[list[int]]:
    async def main() -> list[list[int]]:
        with inline_work():
            async with trio.open_nursery() as nursery:
                sim, rng = await network(nursery, seed, 8)
                records = await store(sim, rng, 3)
                nursery.cancel_scope.cancel()
        return [sorted(m.index for m in sim.holders(r)) for r in records]

    with deterministic_scheduling(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_seed_reproduces_placement() -> None:
    assert placement_of_a_run(7) == placement_of_a_run(7)


async def test_a_reader_does_not_wait_out_a_departed_holder(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = sim_config()
    config = dataclasses.replace(config, dht=dataclasses.replace(config.dht, query_timeout=0.5))
    with inline_work():
        async with trio.open_nursery() as nursery:
            rng = random.Random(6)
            sim = SimNodes(SimNetwork(6), config, rng)
            for number in range(10):
                await sim.add(nursery, SITES[number % len(SITES)])
            (record,) = await store(sim, rng, 1)
            holders = sim.holders(record)
            sim.disconnect(holders[0])  # still announced as a provider: asked, never answers
            reader = next(m for m in sim.live() if m not in holders).node
            started = trio.current_time()
            census = await reader.records.holdings_of(record.record_id)
            full = trio.current_time() - started
            started = trio.current_time()
            enough = await reader.records.holdings_of(record.record_id, enough=record.k)
            early = trio.current_time() - started
            assert full >= config.storage.call_timeout  # a survey waits for every answer
            assert early < config.storage.call_timeout - 1.0  # a reader stops soon after k
            assert len(census) == 3 and len({i for h in enough for i in h.found.complete}) >= 2
            assert await sim.read(reader_member(sim, reader), record, limit=60.0)
            nursery.cancel_scope.cancel()


def reader_member(sim: SimNodes, node: object) -> Member:
    return next(m for m in sim.members if m.node is node)
