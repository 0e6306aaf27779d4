"""The network forms whatever the start order: hundreds of simulated nodes started together,
the bootstrap node last, and a whole network restarting at once."""

from __future__ import annotations

import random

import trio

from node.config.dht import DhtConfig
from node.sim.dht_cluster import SimCluster
from node.sim.network import LinkModel, SimNetwork, deterministic_scheduling


async def test_300_nodes_started_together_with_the_bootstrap_node_last(
    autojump_clock: trio.abc.Clock,
) -> None:
    with deterministic_scheduling(21):
        sim = SimCluster(SimNetwork(21, LinkModel()), DhtConfig(k=20), random.Random(21))
        async with trio.open_nursery() as nursery:
            await sim.start_together(nursery, 300, bootstrap_delay=10.0)
            assert sim.complete() < 0.5  # nobody could join before the bootstrap node came
            took = await sim.until_complete(limit=120.0)
            assert took is not None and took < 60.0, took
            nursery.cancel_scope.cancel()


async def test_a_whole_network_restarting_at_once_forms_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    with deterministic_scheduling(22):
        rng = random.Random(22)
        sim = SimCluster(SimNetwork(22, LinkModel()), DhtConfig(k=20), rng)
        async with trio.open_nursery() as nursery:
            await sim.grow(nursery, 150)
            bootstrap = sim.nodes[0].contact
            for node in list(sim.nodes):  # a site-wide power cut
                sim.crash(node)
            await trio.sleep(30.0)
            order = rng.sample(sim.nodes, len(sim.nodes))  # everything comes back at once
            async with trio.open_nursery() as starting:
                for node in order:
                    starting.start_soon(sim.restart, nursery, node, [bootstrap])
            took = await sim.until_complete(limit=120.0)
            assert took is not None and took < 60.0, took
            nursery.cancel_scope.cancel()


async def test_a_node_alone_keeps_trying_and_joins_when_its_peer_appears(
    autojump_clock: trio.abc.Clock,
) -> None:
    with deterministic_scheduling(23):
        sim = SimCluster(SimNetwork(23, LinkModel()), DhtConfig(k=20), random.Random(23))
        async with trio.open_nursery() as nursery:
            await sim.start_together(nursery, 2, bootstrap_delay=600.0)
            took = await sim.until_complete(limit=60.0)
            assert took is not None and took <= sim.config.join_retry_max + 5, took
            nursery.cancel_scope.cancel()
