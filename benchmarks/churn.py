"""Lookups, gets and ledger gossip while nodes come and go, at rising churn rates.

    python -m benchmarks.churn [--quick] [--rates 0 1 2 4 8] [--nodes 24] [--records 16]
                               [--scheme 4/8] [--duration 600] [--probe-every 20]
                               [--jobs 2] [--out bench-out/churn] [--seed 1] [--json]

For each churn rate (nodes replaced per simulated minute: a random node
leaves for good and an empty one joins at its site; arrivals are a seeded
Poisson process), a fresh network of whole nodes (`benchmarks.simbench`,
repair loop on, gossip every second as the daemon's default) runs for
`--duration` simulated seconds while three probes run side by side:

- lookup: a random live node looks up a random key; success when the live
  node truly closest to it is found, accuracy = share of the true k closest
  live nodes found;
- get: a random live node reads a random record through the real get path;
  its latency in simulated seconds and whether it came back intact;
- ledger: a random live node writes an entry; the time until every node
  live at that moment holds it.

A probe whose own node leaves while it runs is not counted (it would
measure the departure, not the network).

Writes churn_probes.csv, churn_summary.csv and churn_rates.png into --out.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from benchmarks.harness import (
    emit_json,
    parser,
    print_table,
    pyplot,
    save_figure,
    write_csv,
    write_summary_csv,
)
from benchmarks.simbench import Setup, build, parallel, run_virtual
from benchmarks.stats import Scheme
from node.sim.nodes import Member, SimNodes, StoredRecord
from protocol.dht.contact import distance
from protocol.ledger.entries import RecordBody, derive_record_id

READ_LIMIT = 120.0
LEDGER_LIMIT = 120.0


@dataclass(frozen=True)
class Probe:
    rate: float
    kind: str  # lookup | get | ledger
    seconds: float  # simulated time since the start of the churn
    ok: bool
    value: float  # lookup: accuracy; get: latency s; ledger: time to all live nodes s


async def churn_loop(nursery: trio.Nursery, sim: SimNodes, rate: float, rng: random.Random) -> None:
    if rate <= 0:
        return
    while True:
        await trio.sleep(rng.expovariate(rate / 60.0))
        victim = rng.choice(sim.live())
        sim.fail(victim)
        await sim.add(nursery, victim.site)


@dataclass
class Probes:
    """The three probe loops of one run, writing into `out`."""

    sim: SimNodes
    records: list[StoredRecord]
    rate: float
    every: float  # mean simulated seconds between probes of one kind
    out: list[Probe]
    start: float

    def note(self, kind: str, by: Member, began: float, ok: bool, value: float) -> None:
        """Record a probe, unless the node that ran it left meanwhile (it proves nothing)."""
        if by.alive:
            self.out.append(Probe(self.rate, kind, began - self.start, ok, value))

    async def pause(self, rng: random.Random) -> None:
        await trio.sleep(rng.uniform(0.5, 1.5) * self.every)

    async def lookups(self, rng: random.Random) -> None:
        while True:
            live = self.sim.live()
            asker = rng.choice(live)
            target = rng.randbytes(20)
            truth = sorted(
                (m.node.contact for m in live if m is not asker),
                key=lambda c: distance(c.node_id, target),
            )[: asker.node.dht.config.k]
            began = trio.current_time()
            result = await asker.node.dht.find_node(target)
            found = {c.public_key for c in result.closest}
            accuracy = len(found & {c.public_key for c in truth}) / max(1, len(truth))
            self.note(
                "lookup", asker, began, bool(truth) and truth[0].public_key in found, accuracy
            )
            await self.pause(rng)

    async def gets(self, rng: random.Random) -> None:
        while True:
            began = trio.current_time()
            reader, record = rng.choice(self.sim.live()), rng.choice(self.records)
            ok = await self.sim.read(reader, record, READ_LIMIT)
            self.note("get", reader, began, ok, trio.current_time() - began)
            await self.pause(rng)

    async def ledger(self, rng: random.Random) -> None:
        while True:
            members = self.sim.live()
            author = rng.choice(members)
            writer = author.node
            owner, nonce = writer.public_key, rng.randbytes(16)
            record_id = derive_record_id(owner, nonce)
            body = RecordBody(record_id, nonce, rng.randbytes(32), 1, 4, 8, owner)
            began = trio.current_time()
            entry = await writer.ledger.append(body)
            with trio.move_on_after(LEDGER_LIMIT) as waited:
                for member in members:  # every node live when it was written (while it lives)
                    while member.alive and entry.hash not in member.node.ledger.book:
                        with trio.move_on_after(1.0):  # look again whether it died
                            await member.node.ledger.changed()
            converged = not waited.cancelled_caught
            self.note("ledger", author, began, converged, trio.current_time() - began)
            await self.pause(rng)


@dataclass(frozen=True)
class RatePlan:
    rate: float  # replacements per simulated minute
    duration: float
    probe_every: float


def run_rate(setup: Setup, scheme: Scheme, seed: int, plan: RatePlan) -> list[Probe]:
    async def main() -> list[Probe]:
        out: list[Probe] = []
        async with trio.open_nursery() as nursery:
            sim, records, rng = await build(nursery, setup, scheme, seed, repair=True)
            streams = [random.Random(rng.getrandbits(64)) for _ in range(4)]
            probes = Probes(sim, records, plan.rate, plan.probe_every, out, trio.current_time())
            nursery.start_soon(churn_loop, nursery, sim, plan.rate, streams[0])
            nursery.start_soon(probes.lookups, streams[1])
            nursery.start_soon(probes.gets, streams[2])
            nursery.start_soon(probes.ledger, streams[3])
            await trio.sleep(plan.duration)
            nursery.cancel_scope.cancel()
        return out

    return run_virtual(seed, main)


def summarise(rate: float, probes: Sequence[Probe]) -> dict[str, Any]:
    def of(kind: str) -> list[Probe]:
        return [p for p in probes if p.kind == kind]

    def quantile(values: list[float], q: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    lookups, gets, ledger = of("lookup"), of("get"), of("ledger")
    good_gets = [p.value for p in gets if p.ok]
    spread = [p.value for p in ledger if p.ok]
    return {
        "rate_per_min": rate,
        "lookups": len(lookups),
        "lookup_success": round(sum(p.ok for p in lookups) / max(1, len(lookups)), 3),
        "lookup_accuracy": round(statistics.fmean(p.value for p in lookups), 3)
        if lookups
        else None,
        "gets": len(gets),
        "get_success": round(sum(p.ok for p in gets) / max(1, len(gets)), 3),
        "get_median_s": quantile(good_gets, 0.5),
        "get_p90_s": quantile(good_gets, 0.9),
        "ledger_entries": len(ledger),
        "ledger_converged": round(len(spread) / max(1, len(ledger)), 3),
        "ledger_median_s": quantile(spread, 0.5),
        "ledger_p90_s": quantile(spread, 0.9),
    }


def plot(path: Path, summary: list[dict[str, Any]], caption: str) -> None:
    plt = pyplot()
    figure, (lookup, get, ledger) = plt.subplots(1, 3, figsize=(14, 4.4))
    rates = [row["rate_per_min"] for row in summary]
    lookup.plot(rates, [r["lookup_success"] for r in summary], "o-", label="closest node found")
    lookup.plot(rates, [r["lookup_accuracy"] for r in summary], "s--", label="share of k found")
    lookup.set(title="DHT lookups", ylabel="fraction", ylim=(-0.02, 1.05))
    get.plot(rates, [r["get_median_s"] for r in summary], "o-", label="median latency")
    get.plot(rates, [r["get_p90_s"] for r in summary], "s--", label="90th percentile latency")
    get.set(title="Record gets (intact reads)", ylabel="latency (simulated s)")
    success = get.twinx()
    success.plot(rates, [r["get_success"] for r in summary], "g^:", label="success (right axis)")
    success.set_ylim(-0.02, 1.05)
    success.set_ylabel("fraction of gets intact")
    success.legend(fontsize=7, loc="lower right")
    ledger.plot(rates, [r["ledger_median_s"] for r in summary], "o-", label="median")
    ledger.plot(rates, [r["ledger_p90_s"] for r in summary], "s--", label="90th percentile")
    ledger.set(title="Ledger entry reaching every live node", ylabel="time (simulated s)")
    for axis, where in ((lookup, "lower left"), (get, "center left"), (ledger, "upper left")):
        axis.set_xlabel("churn (nodes replaced per simulated minute)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc=where)
    figure.suptitle("Under churn: lookups, gets and ledger gossip")
    save_figure(figure, path, caption)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="rates 0 2 8, 16 nodes, 300 s")
    p.add_argument("--rates", nargs="+", type=float, default=[0, 1, 2, 4, 8])
    p.add_argument("--nodes", type=int, default=24)
    p.add_argument("--records", type=int, default=16)
    p.add_argument("--scheme", default="4/8", metavar="K/N")
    p.add_argument("--duration", type=float, default=600.0, help="simulated seconds per rate")
    p.add_argument("--probe-every", type=float, default=20.0, help="mean simulated s per probe")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench-out/churn"))
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.nodes, args.records, args.duration = [0, 2, 8], 16, 12, 300.0
    scheme = Scheme.parse(args.scheme)
    if any(rate < 0 for rate in args.rates):
        p.error("--rates must not be negative")
    if scheme.n > args.nodes:
        p.error(f"--nodes {args.nodes} is fewer than n of {scheme}")
    setup = replace(Setup(), nodes=args.nodes, records=args.records, gossip_interval=1.0)
    args.out.mkdir(parents=True, exist_ok=True)
    calls = [
        (setup, scheme, args.seed, RatePlan(rate, args.duration, args.probe_every))
        for rate in args.rates
    ]
    results = parallel(args.jobs, run_rate, calls)
    summary = [summarise(rate, probes) for rate, probes in zip(args.rates, results, strict=True)]
    probes = [p for run in results for p in run]
    write_csv(
        args.out / "churn_probes.csv",
        ["rate_per_min", "kind", "seconds", "ok", "value"],
        [[p.rate, p.kind, round(p.seconds, 3), p.ok, round(p.value, 4)] for p in probes],
    )
    write_summary_csv(args.out / "churn_summary.csv", summary)
    caption = (
        f"{setup.caption()}; {scheme} coding, gossip every 1 s; {args.duration:g} s per rate,"
        f" a probe of each kind every ~{args.probe_every:g} s; seed {args.seed}"
    )
    print(f"churn: {caption}")
    print_table(list(summary[0]), [list(row.values()) for row in summary])
    plot(args.out / "churn_rates.png", summary, caption)
    emit_json({"rates": summary}, args.json)
    return summary


if __name__ == "__main__":
    main()
