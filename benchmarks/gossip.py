"""Ledger gossip on the simulated network: time to coverage, and its cost.

    python -m benchmarks.gossip [--sizes 50 200 1000] [--losses 0 0.1] [--trials 5]
                                [--interval 0.2] [--push-fanout 3] [--out bench-out/gossip]
                                [--seed 1] [--json]

For each network size N and message-loss rate, N whole ledger nodes (the real
LedgerService and GossipService over the seeded in-memory network, 5-60 ms
per-link latency, full membership) gossip every `--interval` seconds. In
each trial one new entry is written at a random node; the benchmark records
the virtual time until 99% and until all nodes hold it (and that divided by
the interval, in rounds), and the bytes all nodes sent per node per round.
Writes gossip_samples.csv, gossip_summary.csv and gossip.png into --out;
`--json` ends with the figures: `t99_seconds` and `t100_seconds` of N=200 at
10% loss (the target case: 99% within 2 s at 200 ms rounds) when measured,
and `converged` (every trial reached every node).
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
from node.config.gossip import GossipConfig
from node.sim.ledger_cluster import GossipCluster
from node.sim.network import LinkModel, SimNetwork, deterministic_scheduling
from protocol.ledger.entries import RecordBody, derive_record_id

LIMIT = 120.0  # virtual seconds a trial may take before it counts as not converged


@dataclass(frozen=True)
class Trial:
    size: int
    loss: float
    t99: float
    t100: float | None


def run(
    size: int, loss: float, trials: int, config: GossipConfig, seed: int
) -> tuple[list[Trial], float]:
    async def main() -> tuple[list[Trial], float]:
        rng = random.Random(seed)
        network = SimNetwork(seed, LinkModel(loss=loss))
        cluster = GossipCluster(network, config, rng)
        results = []
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery, size)
            await trio.sleep(2 * config.interval)
            bytes_before = sum(network.bytes_sent.values())
            started = trio.current_time()
            for _ in range(trials):
                writer = rng.choice(cluster.nodes)
                owner = writer.contact.public_key
                nonce = rng.randbytes(16)
                body = RecordBody(
                    derive_record_id(owner, nonce), nonce, rng.randbytes(32), 1, 4, 8, owner
                )
                entry = await writer.ledger.append(body)
                t99, t100 = await spread(cluster, entry.hash)
                results.append(Trial(size, loss, t99, t100))
            rounds = (trio.current_time() - started) / config.interval
            sent = sum(network.bytes_sent.values()) - bytes_before
            nursery.cancel_scope.cancel()
        return results, sent / size / rounds

    with deterministic_scheduling(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def spread(cluster: GossipCluster, entry_hash: bytes) -> tuple[float, float | None]:
    """Virtual seconds until 99% and until all nodes hold the entry (None: not within LIMIT)."""
    t99 = await cluster.wait_for(lambda: cluster.coverage(entry_hash) >= 0.99, LIMIT)
    try:
        return t99, t99 + await cluster.wait_for(lambda: cluster.coverage(entry_hash) == 1.0, LIMIT)
    except trio.TooSlowError:
        return t99, None


def summarise(trials: list[Trial], bytes_per_round: float, interval: float) -> dict[str, Any]:
    t99 = [t.t99 for t in trials]
    done = [t.t100 for t in trials if t.t100 is not None]
    return {
        "size": trials[0].size,
        "loss": trials[0].loss,
        "trials": len(trials),
        "t99_seconds": round(statistics.median(t99), 3),
        "t99_rounds": round(statistics.median(t99) / interval, 1),
        "t100_seconds": round(statistics.median(done), 3) if done else None,
        "t100_rounds": round(statistics.median(done) / interval, 1) if done else None,
        "converged": len(done) == len(trials),
        "bytes_per_node_per_round": round(bytes_per_round),
    }


def plot(path: Path, summary: list[dict[str, Any]], caption: str) -> None:
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    figure.suptitle("Ledger gossip in simulation: time to reach the network, and its cost")
    for loss in sorted({row["loss"] for row in summary}):
        rows = [r for r in summary if r["loss"] == loss]
        sizes = [r["size"] for r in rows]
        left.plot(
            sizes, [r["t99_seconds"] for r in rows], "o-", label=f"99% of nodes, loss {loss:.0%}"
        )
        left.plot(
            sizes,
            [r["t100_seconds"] or float("nan") for r in rows],
            "s--",
            label=f"all nodes, loss {loss:.0%}",
        )
        right.plot(
            sizes,
            [r["bytes_per_node_per_round"] / 1024 for r in rows],
            "o-",
            label=f"loss {loss:.0%}",
        )
    sizes = sorted({row["size"] for row in summary})
    left.set(
        title="Time for a new entry to spread (median)",
        xlabel="nodes (log scale)",
        ylabel="virtual seconds",
        xscale="log",
    )
    right.set(
        title="Traffic (all messages, both directions)",
        xlabel="nodes (log scale)",
        ylabel="KiB sent per node per round",
        xscale="log",
    )
    for axis in (left, right):
        size_axis(axis, sizes)
        axis.set_ylim(bottom=0)
        axis.legend()
    save_figure(figure, path, caption)


def write_outputs(
    out: Path, trials: list[Trial], summary: list[dict[str, Any]], caption: str
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / "gossip_samples.csv",
        ["nodes", "loss", "t99_seconds", "t100_seconds"],
        ((t.size, t.loss, round(t.t99, 6), t.t100) for t in trials),
    )
    write_summary_csv(out / "gossip_summary.csv", summary)
    plot(out / "gossip.png", summary, caption)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    p.add_argument("--losses", type=float, nargs="+", default=[0.0, 0.1])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--fanout", type=int, default=3)
    p.add_argument("--push-fanout", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench-out/gossip"))
    args = p.parse_args()
    config = GossipConfig(interval=args.interval, fanout=args.fanout, push_fanout=args.push_fanout)
    trials: list[Trial] = []
    summary = []
    for size in args.sizes:
        for loss in args.losses:
            started = time.perf_counter()
            batch, bytes_per_round = run(size, loss, args.trials, config, args.seed)
            trials += batch
            row = summarise(batch, bytes_per_round, args.interval)
            row["wall_seconds"] = round(time.perf_counter() - started, 1)
            summary.append(row)
    caption = (
        f"round interval {args.interval * 1000:.0f} ms, fanout {args.fanout},"
        f" push fanout {args.push_fanout}, {args.trials} entries per case,"
        f" link latency 5-60 ms, seed {args.seed}"
    )
    write_outputs(args.out, trials, summary, caption)
    print(f"Ledger gossip in simulation ({caption}); outputs in {args.out}/")
    columns = [
        "size",
        "loss",
        "t99_seconds",
        "t99_rounds",
        "t100_seconds",
        "t100_rounds",
        "bytes_per_node_per_round",
        "converged",
        "wall_seconds",
    ]
    print_table(columns, [[row[c] for c in columns] for row in summary])
    target = next((r for r in summary if r["size"] == 200 and r["loss"] == 0.1), summary[-1])
    emit_json(
        {
            "t99_seconds": target["t99_seconds"],
            "t100_seconds": target["t100_seconds"],
            "target_case": {"size": target["size"], "loss": target["loss"]},
            "converged": all(r["converged"] for r in summary),
            "cases": summary,
            "seed": args.seed,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
