"""Kademlia lookups on the simulated network: hops, latency, accuracy, messages.

    python -m benchmarks.lookup [--sizes 50 200 1000] [--lookups 200] [--seed 1]
                                [--loss 0.0] [--out bench-out/lookup] [--json]

For each network size N, N whole DHT nodes (the real node code, over the
seeded in-memory network with 5-60 ms per-link latency) join one after
another in batches of 8; then `--lookups` lookups for random keys start from
random nodes. Per lookup: hops (referral depth of the closest contact found),
virtual duration, overlap with the true k closest live nodes, and RPCs sent
(each RPC is two messages). Writes lookup_samples.csv, lookup_summary.csv and
lookup.png into --out; `--json` ends with the figures, where `accuracy` and
`median_hops` are those of the largest N.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.testing

from benchmarks.harness import (
    emit_json,
    parser,
    print_table,
    pyplot,
    save_figure,
    size_axis,
    write_csv,
    write_summary_csv,
)
from node.config.dht import DhtConfig
from node.sim.dht_cluster import SimCluster
from node.sim.network import LinkModel, SimNetwork, deterministic_scheduling


@dataclass(frozen=True)
class Sample:
    size: int
    hops: int
    seconds: float
    overlap: float
    rpcs: int


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(size: int, lookups: int, seed: int, loss: float, config: DhtConfig) -> list[Sample]:
    async def main() -> list[Sample]:
        rng = random.Random(seed)
        cluster = SimCluster(SimNetwork(seed, LinkModel(loss=loss)), config, rng)
        samples = []
        async with trio.open_nursery() as nursery:
            await cluster.grow(nursery, size)
            for _ in range(lookups):
                source = rng.choice(cluster.live())
                target = rng.randbytes(20)
                found = await source.dht.find_node(target)
                truth = {
                    c.public_key for c in cluster.true_closest(target, config.k, exclude=source)
                }
                overlap = len(truth & {c.public_key for c in found.closest}) / len(truth)
                samples.append(Sample(size, found.hops, found.duration, overlap, found.queries))
            nursery.cancel_scope.cancel()
        return samples

    with deterministic_scheduling(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def summarise(samples: list[Sample], k: int) -> dict[str, Any]:
    hops = [float(s.hops) for s in samples]
    seconds = [s.seconds for s in samples]
    rpcs = [float(s.rpcs) for s in samples]
    return {
        "size": samples[0].size,
        "lookups": len(samples),
        "median_hops": statistics.median(hops),
        "p90_hops": percentile(hops, 0.9),
        "median_ms": round(1000 * statistics.median(seconds), 1),
        "p90_ms": round(1000 * percentile(seconds, 0.9), 1),
        "accuracy": round(sum(s.overlap >= (k - 1) / k for s in samples) / len(samples), 3),
        "mean_overlap": round(statistics.mean(s.overlap for s in samples), 4),
        "median_rpcs": statistics.median(rpcs),
        "median_messages": 2 * statistics.median(rpcs),
    }


def write_outputs(
    out: Path, samples: list[Sample], summary: list[dict[str, Any]], caption: str
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / "lookup_samples.csv",
        ["nodes", "hops", "virtual_seconds", "overlap_with_true_k", "rpcs"],
        ((s.size, s.hops, round(s.seconds, 6), s.overlap, s.rpcs) for s in samples),
    )
    write_summary_csv(out / "lookup_summary.csv", summary)
    plot(out / "lookup.png", samples, summary, caption)


def plot(path: Path, samples: list[Sample], summary: list[dict[str, Any]], caption: str) -> None:
    plt = pyplot()
    sizes = [row["size"] for row in summary]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.6))
    figure.suptitle("Kademlia lookups in simulation: hops, latency and accuracy by network size")
    hop_sets = [[s.hops for s in samples if s.size == n] for n in sizes]
    top = max(max(h) for h in hop_sets) + 1
    width = 0.8 / len(sizes)
    for i, (n, hops) in enumerate(zip(sizes, hop_sets, strict=True)):
        shares = [hops.count(h) / len(hops) for h in range(top)]
        left.bar([h + i * width for h in range(top)], shares, width, label=f"N = {n}")
    left.set(title="Hops to the closest node", xlabel="hops", ylabel="share of lookups")
    left.set_xticks([h + width * (len(sizes) - 1) / 2 for h in range(top)], list(range(top)))
    left.legend()
    middle.plot(sizes, [r["median_ms"] for r in summary], "o-", label="median")
    middle.plot(sizes, [r["p90_ms"] for r in summary], "s--", label="90th percentile")
    middle.set(
        title="Lookup latency (virtual)", xlabel="nodes (log scale)", ylabel="ms", xscale="log"
    )
    middle.set_ylim(bottom=0)
    middle.legend(loc="lower right")
    right.plot(
        sizes, [100 * r["accuracy"] for r in summary], "o-", label="lookups with >= k-1 of true k"
    )
    right.plot(
        sizes, [100 * r["mean_overlap"] for r in summary], "s--", label="mean overlap with true k"
    )
    right.set(
        title="Closest-set accuracy",
        xlabel="nodes (log scale)",
        ylabel="%",
        xscale="log",
        ylim=(0, 102),
    )
    twin = right.twinx()
    twin.plot(
        sizes, [r["median_rpcs"] for r in summary], "^:", color="grey", label="RPCs per lookup"
    )
    twin.set_ylabel("RPCs per lookup (median)")
    twin.set_ylim(0, 1.6 * max(r["median_rpcs"] for r in summary))
    right.legend(loc="lower left")
    twin.legend(loc="center right")
    for axis in (middle, right):
        size_axis(axis, sizes)
    save_figure(figure, path, caption)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--alpha", type=int, default=3)
    p.add_argument("--symbol-bits", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench-out/lookup"))
    args = p.parse_args()
    config = DhtConfig(k=args.k, alpha=args.alpha, symbol_bits=args.symbol_bits)
    samples: list[Sample] = []
    summary = []
    for size in args.sizes:
        started = time.perf_counter()
        batch = measure(size, args.lookups, args.seed, args.loss, config)
        samples += batch
        row = summarise(batch, args.k)
        row["wall_seconds"] = round(time.perf_counter() - started, 1)
        summary.append(row)
    caption = (
        f"k={args.k}, alpha={args.alpha}, b={args.symbol_bits}, {args.lookups} lookups per size"
        f" for random keys, link latency 5-60 ms, loss {args.loss:.0%}, seed {args.seed}"
    )
    write_outputs(args.out, samples, summary, caption)
    print(f"Kademlia lookups in simulation ({caption}); outputs in {args.out}/")
    columns = [
        "size",
        "median_hops",
        "p90_hops",
        "median_ms",
        "p90_ms",
        "accuracy",
        "mean_overlap",
        "median_rpcs",
        "wall_seconds",
    ]
    print_table(columns, [[row[c] for c in columns] for row in summary])
    largest = summary[-1]
    emit_json(
        {
            "accuracy": largest["accuracy"],
            "median_hops": largest["median_hops"],
            "sizes": summary,
            "seed": args.seed,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
