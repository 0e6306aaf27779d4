"""Time to a complete routing table when a whole network starts at once.

    python -m benchmarks.join [--daemons 8] [--runs 20] [--sim-nodes 300]
                              [--sim-seeds 5] [--bootstrap-delay 10] [--json]

Real daemons: `--daemons` `medvault run` processes on 127.0.0.1 are started
at the same moment, the bootstrap node last, `--runs` times (alternately
without and with peers.json: a new network, then a restart after a power
cut). Per run: wall seconds from launching the processes until every node's
routing table (asked over its control socket) holds all the others; and the
same from the moment the last control socket was up (what the DHT itself
took, without Python's start-up on a shared machine).

Simulation: `--sim-nodes` whole DHT nodes on the seeded in-memory network
(5-60 ms links) start at virtual t=0, all bootstrapping from a node that
starts `--bootstrap-delay` seconds later; virtual seconds from the bootstrap
node's start until every node's table holds its true k closest live nodes,
for `--sim-seeds` seeds.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from benchmarks.harness import emit_json, parser, print_table
from node.config.dht import DhtConfig
from node.dht.peerstore import PEERS_FILE
from node.sim.dht_cluster import SimCluster
from node.sim.localnet import Network
from node.sim.network import LinkModel, SimNetwork, deterministic_scheduling

DEADLINE = 120.0


def daemon_runs(count: int, runs: int, root: Path, seed: int) -> list[tuple[float, float]]:
    """(seconds from launch, seconds from the last control socket) per run."""
    net = Network(root / "net", count, {"gossip": {"interval": 0.5}})
    rng = random.Random(seed)
    results = []
    try:
        for run in range(runs):
            if run % 2 == 0:
                for node in net.nodes:
                    (node.data_dir / PEERS_FILE).unlink(missing_ok=True)
            order = [*rng.sample(range(1, count), count - 1), 0]
            launched = time.monotonic()
            net.start_together(order)
            up = time.monotonic()
            net.wait_complete(DEADLINE)
            done = time.monotonic()
            results.append((done - launched, done - up))
            net.stop_all()
    finally:
        net.stop_all()
    return results


def sim_run(size: int, seed: int, bootstrap_delay: float) -> float:
    async def main() -> float:
        sim = SimCluster(SimNetwork(seed, LinkModel()), DhtConfig(), random.Random(seed))
        async with trio.open_nursery() as nursery:
            await sim.start_together(nursery, size, bootstrap_delay)
            took = await sim.until_complete(DEADLINE)
            nursery.cancel_scope.cancel()
        if took is None:
            raise SystemExit(f"seed {seed}: tables not complete within {DEADLINE} virtual s")
        return took

    with deterministic_scheduling(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def main() -> None:
    p = parser(__doc__.splitlines()[0] if __doc__ else "join benchmark")
    p.add_argument("--daemons", type=int, default=8)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--sim-nodes", type=int, default=300)
    p.add_argument("--sim-seeds", type=int, default=5)
    p.add_argument("--bootstrap-delay", type=float, default=10.0)
    args = p.parse_args()
    figures: dict[str, Any] = {}
    rows = []
    if args.runs:
        with tempfile.TemporaryDirectory(prefix="medvault-join-") as tmp:
            runs = daemon_runs(args.daemons, args.runs, Path(tmp), args.seed)
        launch = summary([r[0] for r in runs])
        settle = summary([r[1] for r in runs])
        rows.append([f"{args.daemons} daemons, from launch (s)", *launch, len(runs)])
        rows.append([f"{args.daemons} daemons, from last socket up (s)", *settle, len(runs)])
        figures |= {
            "daemons": args.daemons,
            "daemon_median_s": launch[0],
            "daemon_max_s": launch[1],
            "daemon_after_up_median_s": settle[0],
            "daemon_after_up_max_s": settle[1],
        }
    if args.sim_seeds:
        sims = [
            sim_run(args.sim_nodes, args.seed + i, args.bootstrap_delay)
            for i in range(args.sim_seeds)
        ]
        sim = summary(sims)
        rows.append([f"{args.sim_nodes} simulated nodes (virtual s)", *sim, len(sims)])
        figures |= {"sim_nodes": args.sim_nodes, "sim_median_s": sim[0], "sim_max_s": sim[1]}
    print("time to complete routing tables after a simultaneous start (bootstrap node last)")
    print_table(["network", "median", "max", "runs"], rows)
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
