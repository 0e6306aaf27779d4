"""The four durability experiments, each on fresh networks of whole nodes.

- availability: independent, transient node failures (each node down with
  probability p), no repair; every sample reads one record through the real
  get path from a node holding none of it, so the n holders are exactly the
  Bernoulli trials the binomial formula assumes.
- sequential: nodes die for good one at a time until half are gone, with the
  repair loop on (waiting for it between deaths) or off.
- sites: whole hospitals cut off at once (every single site, then every pair),
  with site-aware placement and with placement that ignores sites; then
  hospitals lost for good one after the other, with and without repair.
- churn: nodes leave for good and empty ones join in their place at a fixed
  interval, with and without repair; the fraction of records readable is
  sampled over time.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import trio

from benchmarks.simbench import (
    Setup,
    build,
    healthy_fraction,
    read_all_from,
    readable_fraction,
    run_virtual,
    site_name,
    total_traffic,
    traffic,
)
from benchmarks.stats import Scheme
from node.sim.nodes import SimNodes, StoredRecord

READ_LIMIT = 120.0  # simulated seconds a read may take before it counts as failed
POLL = 5.0  # simulated seconds between checks while waiting for repair
DISASTER_PASSES = 3  # repair intervals between losing one hospital and the next


@dataclass(frozen=True)
class AvailabilitySample:
    scheme: Scheme
    down: float
    readable: bool  # through the real get path
    holders_up: bool  # ground truth: at least k distinct indices on reachable nodes


def availability(
    setup: Setup, scheme: Scheme, downs: list[float], samples: int, seed: int
) -> list[AvailabilitySample]:
    async def main() -> list[AvailabilitySample]:
        async with trio.open_nursery() as nursery:
            sim, records, rng = await build(nursery, setup, scheme, seed, repair=False)
            out = []
            for down in downs:
                for number in range(samples):
                    record = records[number % len(records)]
                    out.append(await _one_sample(sim, record, down, rng))
            nursery.cancel_scope.cancel()
        return out

    return run_virtual(seed, main)


async def _one_sample(
    sim: SimNodes, record: StoredRecord, down: float, rng: random.Random
) -> AvailabilitySample:
    holders = {m.index for m in sim.holders(record)}
    if len(holders) >= len(sim.members):
        raise ValueError("every node holds the record: no node can read it as an outsider")
    while True:
        failed = [m for m in sim.members if rng.random() < down]
        readers = [m for m in sim.members if m not in failed and m.index not in holders]
        if readers:
            break
    for member in failed:
        sim.disconnect(member)
    truth = sim.health(record).readable
    readable = await sim.read(rng.choice(readers), record, READ_LIMIT)
    for member in failed:
        sim.reconnect(member)
    scheme = Scheme(record.k, record.n)
    return AvailabilitySample(scheme, down, readable, truth)


@dataclass(frozen=True)
class LossStep:
    scheme: Scheme
    repair: bool
    lost: int  # nodes lost so far
    readable: float  # fraction of records readable (ground truth)
    healthy: float  # fraction with n distinct hosts (or as many as live nodes)
    repair_seconds: float | None  # from the death until all readable records were healthy
    repair_bytes: int  # shard data moved during this step
    lost_bytes: int  # shard data the dead node held


@dataclass(frozen=True)
class LossRun:
    steps: list[LossStep]
    verified: int  # records read intact through the get path at the end
    records: int


def sequential(setup: Setup, scheme: Scheme, repair: bool, seed: int, patience: int = 5) -> LossRun:
    """Kill one node at a time until half are gone; with repair, wait for it in between."""

    async def main() -> LossRun:
        async with trio.open_nursery() as nursery:
            sim, records, rng = await build(nursery, setup, scheme, seed, repair=repair)
            steps = []
            for lost in range(1, setup.nodes // 2 + 1):
                victim = rng.choice(sim.live())
                lost_bytes = victim.node.parts.store.used_bytes
                moved = traffic(sim)
                started = trio.current_time()
                sim.fail(victim)
                took = None
                if repair:
                    took = await _until_healthy(sim, records, patience * setup.repair_interval)
                    if took is not None:
                        took -= started
                steps.append(
                    LossStep(
                        scheme,
                        repair,
                        lost,
                        readable_fraction(sim, records),
                        healthy_fraction(sim, records),
                        took,
                        traffic(sim) - moved,
                        lost_bytes,
                    )
                )
            verified = await read_all_from(sim, records, rng, READ_LIMIT)
            nursery.cancel_scope.cancel()
        return LossRun(steps, verified, len(records))

    return run_virtual(seed, main)


async def _until_healthy(sim: SimNodes, records: list[StoredRecord], limit: float) -> float | None:
    """The time every readable record became healthy, or None if not within `limit`."""
    deadline = trio.current_time() + limit
    while trio.current_time() < deadline:
        await trio.sleep(POLL)
        if all(
            sim.health(r).distinct_hosts >= min(len(sim.live()), r.n)
            for r in records
            if sim.health(r).readable
        ):
            return trio.current_time()
    return None


@dataclass(frozen=True)
class SiteLoss:
    scheme: Scheme
    site_aware: bool
    sites_lost: int
    combinations: int
    readable: float  # mean fraction of records read intact over every combination
    worst: float  # the worst combination's fraction
    holders_up: float  # ground truth, mean over combinations


def sites(setup: Setup, scheme: Scheme, site_aware: bool, seed: int) -> list[SiteLoss]:
    async def main() -> list[SiteLoss]:
        async with trio.open_nursery() as nursery:
            sim, records, rng = await build(
                nursery, setup, scheme, seed, repair=False, site_aware=site_aware
            )
            out = []
            names = [site_name(i) for i in range(setup.sites)]
            for count in (1, 2):
                fractions, truths = [], []
                for lost in itertools.combinations(names, count):
                    cut = [m for m in sim.members if m.site in lost]
                    for member in cut:
                        sim.disconnect(member)
                    truths.append(readable_fraction(sim, records))
                    read = await read_all_from(sim, records, rng, READ_LIMIT)
                    fractions.append(read / len(records))
                    for member in cut:
                        sim.reconnect(member)
                out.append(
                    SiteLoss(
                        scheme,
                        site_aware,
                        count,
                        len(fractions),
                        sum(fractions) / len(fractions),
                        min(fractions),
                        sum(truths) / len(truths),
                    )
                )
            nursery.cancel_scope.cancel()
        return out

    return run_virtual(seed, main)


@dataclass(frozen=True)
class SiteDisaster:
    scheme: Scheme
    site_aware: bool
    repair: bool
    sites_lost: int  # hospitals lost for good so far
    readable: float  # fraction of records read intact after the wait
    healthy: float


def site_disasters(
    setup: Setup, scheme: Scheme, site_aware: bool, repair: bool, seed: int
) -> list[SiteDisaster]:
    """Lose one hospital for good, wait 3 repair intervals, then lose a second."""

    async def main() -> list[SiteDisaster]:
        async with trio.open_nursery() as nursery:
            sim, records, rng = await build(
                nursery, setup, scheme, seed, repair=repair, site_aware=site_aware
            )
            out = []
            for lost in (1, 2):
                for member in [m for m in sim.live() if m.site == site_name(lost - 1)]:
                    sim.fail(member)
                await trio.sleep(DISASTER_PASSES * setup.repair_interval)
                read = await read_all_from(sim, records, rng, READ_LIMIT)
                out.append(
                    SiteDisaster(
                        scheme,
                        site_aware,
                        repair,
                        lost,
                        read / len(records),
                        healthy_fraction(sim, records),
                    )
                )
            nursery.cancel_scope.cancel()
        return out

    return run_virtual(seed, main)


@dataclass(frozen=True)
class ChurnPoint:
    scheme: Scheme
    repair: bool
    seconds: float
    replaced: int  # nodes replaced so far
    readable: float
    healthy: float


@dataclass(frozen=True)
class ChurnRun:
    points: list[ChurnPoint]
    repair_bytes: int
    all_bytes: int
    stored_bytes: int  # shard data held when the churn started
    verified: int
    records: int


@dataclass(frozen=True)
class ChurnTiming:
    every: float  # simulated seconds between replacements
    duration: float
    sample_every: float


def churn(setup: Setup, scheme: Scheme, repair: bool, seed: int, timing: ChurnTiming) -> ChurnRun:
    """Replace a random node by an empty one every `timing.every` seconds."""
    every, duration, sample_every = timing.every, timing.duration, timing.sample_every

    async def main() -> ChurnRun:
        async with trio.open_nursery() as nursery:
            sim, records, rng = await build(nursery, setup, scheme, seed, repair=repair)
            stored = sum(m.node.parts.store.used_bytes for m in sim.live())
            moved, everything = traffic(sim), total_traffic(sim)
            start = trio.current_time()
            next_churn = start + every
            replaced = 0
            points = [ChurnPoint(scheme, repair, 0.0, 0, 1.0, 1.0)]
            while (now := trio.current_time()) - start < duration:
                await trio.sleep_until(min(next_churn, now + sample_every))
                if trio.current_time() >= next_churn:
                    victim = rng.choice(sim.live())
                    sim.fail(victim)
                    await sim.add(nursery, victim.site)
                    replaced += 1
                    next_churn += every
                points.append(
                    ChurnPoint(
                        scheme,
                        repair,
                        trio.current_time() - start,
                        replaced,
                        readable_fraction(sim, records),
                        healthy_fraction(sim, records),
                    )
                )
            moved, everything = traffic(sim) - moved, total_traffic(sim) - everything
            verified = await read_all_from(sim, records, rng, READ_LIMIT)
            run = ChurnRun(points, moved, everything, stored, verified, len(records))
            nursery.cancel_scope.cancel()
        return run

    return run_virtual(seed, main)
