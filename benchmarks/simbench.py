"""What the research benchmarks share: a seeded network of whole nodes, virtual time.

Every run builds a fresh network of complete nodes (`node.sim.nodes`) on the
seeded simulated network, spreads them round-robin over `sites` hospitals,
stores `records` records of random content from random nodes, and waits
until every ledger knows them. Time is trio's autojump clock: a repair
interval of 60 simulated seconds costs nothing while nodes wait, so a run
of an hour of simulated time takes seconds to minutes of CPU. Failure-model
and timing figures are in simulated seconds.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
import trio.testing

from benchmarks.stats import Scheme
from node.config.dht import DhtConfig
from node.config.gossip import GossipConfig
from node.config.settings import NodeConfig
from node.config.storage import StorageConfig
from node.offload import inline_work
from node.sim.network import SimNetwork, deterministic_scheduling
from node.sim.nodes import Member, SimNodes, StoredRecord

T = TypeVar("T")

NEVER = 1e12  # a repair interval that never comes: the repair loop is off
REPAIR_TRAFFIC = ("store_shards", "fetch_blocks")  # moving shard data (acks included)


@dataclass(frozen=True)
class Setup:
    nodes: int = 24
    sites: int = 4
    records: int = 24
    record_bytes: int = 8192
    segment_size: int = 4096
    repair_interval: float = 60.0  # simulated seconds between a node's repair passes
    gossip_interval: float = 30.0
    call_timeout: float = 5.0
    query_timeout: float = 2.0

    def caption(self) -> str:
        return (
            f"{self.nodes} whole nodes at {self.sites} sites, {self.records} records of"
            f" {self.record_bytes // 1024} KiB, repair pass every {self.repair_interval:g} s"
            " (simulated)"
        )


def node_config(setup: Setup, scheme: Scheme, repair: bool) -> NodeConfig:
    return NodeConfig(
        dht=DhtConfig(k=20, query_timeout=setup.query_timeout),
        gossip=GossipConfig(interval=setup.gossip_interval),
        storage=StorageConfig(
            k=scheme.k,
            n=scheme.n,
            happy=scheme.n,
            segment_size=setup.segment_size,
            call_timeout=setup.call_timeout,
            repair_interval=setup.repair_interval if repair else NEVER,
            # No background audits: the figures are what repair moves (audits cost one
            # block per claimed index of the records a node coordinates, per pass, up
            # to storage.audit_bytes; docs/records.md).
            audit_bytes=0,
        ),
    )


def site_name(number: int) -> str:
    return f"hospital-{number}"


async def build(
    nursery: trio.Nursery,
    setup: Setup,
    scheme: Scheme,
    seed: int,
    *,
    repair: bool,
    site_aware: bool = True,
) -> tuple[SimNodes, list[StoredRecord], random.Random]:
    """A network of `setup.nodes` whole nodes holding `setup.records` records."""
    if setup.nodes < scheme.n:
        raise ValueError(f"{scheme}: needs at least {scheme.n} nodes, the setup has {setup.nodes}")
    rng = random.Random(seed)
    sim = SimNodes(SimNetwork(seed), node_config(setup, scheme, repair), rng, site_aware=site_aware)
    for number in range(setup.nodes):
        await sim.add(nursery, site_name(number % setup.sites))
    records = [
        await sim.put(rng.choice(sim.live()), rng.randbytes(setup.record_bytes))
        for _ in range(setup.records)
    ]
    await sim.known_everywhere(records)
    return sim, records, rng


def run_virtual(seed: int, main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` under the autojump clock, reproducibly for `seed`."""

    async def inline() -> T:
        with inline_work():
            return await main()

    with deterministic_scheduling(seed):
        return trio.run(inline, clock=trio.testing.MockClock(autojump_threshold=0))


def traffic(sim: SimNodes, kinds: tuple[str, ...] = REPAIR_TRAFFIC) -> int:
    return sum(sim.network.traffic.get(kind, 0) for kind in kinds)


def total_traffic(sim: SimNodes) -> int:
    return sum(sim.network.traffic.values())


def readable_fraction(sim: SimNodes, records: list[StoredRecord]) -> float:
    return sum(sim.health(r).readable for r in records) / len(records)


def healthy_fraction(sim: SimNodes, records: list[StoredRecord]) -> float:
    """Records with as many distinct live hosts as n (or as live nodes, if fewer)."""
    target = min(len(sim.live()), records[0].n) if records else 0
    return sum(sim.health(r).distinct_hosts >= target for r in records) / len(records)


async def read_all_from(
    sim: SimNodes, records: list[StoredRecord], rng: random.Random, limit: float
) -> int:
    """How many records a random live node reads intact through the real get path.

    The reader is one whose ledger already knows the record: a node that
    joined a moment ago answers "unknown record" until gossip reaches it.
    """
    readable = 0
    for record in records:
        knowing = [m for m in sim.live() if record.record_id in m.node.ledger.state().records]
        if knowing:
            reader: Member = rng.choice(knowing)
            readable += await sim.read(reader, record, limit)
    return readable


def parallel(jobs: int, fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
    """fn(*call) for every call, in worker processes (each run is seeded on its own)."""
    if jobs <= 1 or len(calls) <= 1:
        return [fn(*call) for call in calls]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(fn, *call) for call in calls]
        return [f.result() for f in futures]
