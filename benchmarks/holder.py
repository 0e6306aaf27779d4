"""A holder's cost of receiving a put: CPU per MiB stored and peak RSS (issue 17).

    python -m benchmarks.holder [--nodes 5] [-k 3] [-n 5] [--size-mib 64] [--repeat 3]
                                [--segment-size 1048576] [--dir DIR] [--json]

Starts real daemons as benchmarks.cluster does, then puts `--repeat` seeded
records of `--size-mib` from node0. Around each put it reads every other
node's (a holder's) CPU time and resets its peak RSS (VmHWM), and counts the
bytes its shard store grew by. Prints per holder and run the CPU seconds per
MiB received and the peak RSS above the RSS before the put, and the medians
over holders and runs. The machine is shared: compare medians and ratios of
one run, not single absolute figures.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.cluster import network_settings, put
from benchmarks.harness import MIB, emit_json, parser, print_table, seeded_bytes
from node.sim.localnet import Network
from node.sim.procstat import cpu_seconds, reset_peak, resident_mib


def stored_bytes(data_dir: Path) -> int:
    """Bytes of the shard packs (and any old one-file-per-block shards) under a node's data
    directory."""
    total = 0
    for path, _dirs, files in os.walk(data_dir):
        if {"packs", "shards"} & set(Path(path).parts):
            total += sum(os.path.getsize(os.path.join(path, name)) for name in files)
    return total


def measure_put(net: Network, source: Path, grantee: str) -> list[dict[str, float]]:
    """One put from node0; per holder: MiB stored, CPU s per MiB, peak RSS and its growth."""
    holders = [node for node in net.nodes[1:] if node.proc is not None]
    before = []
    for node in holders:
        assert node.proc is not None
        rss = reset_peak(node.proc.pid)
        before.append((rss, cpu_seconds(node.proc.pid), stored_bytes(node.data_dir)))
    put(net, source, grantee)
    rows = []
    for node, (rss, cpu, size) in zip(holders, before, strict=True):
        assert node.proc is not None
        peak = resident_mib(node.proc.pid)[1]
        received = (stored_bytes(node.data_dir) - size) / MIB
        spent = cpu_seconds(node.proc.pid) - cpu
        rows.append(
            {
                "received_mib": round(received, 2),
                "cpu_ms_per_mib": round(1000 * spent / received, 2) if received else 0.0,
                "peak_rss_mib": round(peak, 1),
                "peak_growth_mib": round(peak - rss, 1),
            }
        )
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("-k", type=int, default=3)
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--size-mib", type=float, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--segment-size", type=int, default=1024 * 1024)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="medvault-holder-") as tmp:
        root = args.dir or Path(tmp)
        figures = run(args, root)
    emit_json(figures, args.json)


def run(args: Any, root: Path) -> dict[str, Any]:
    net = Network(root / "net", args.nodes, network_settings(args))
    rows: list[dict[str, float]] = []
    try:
        net.start_all()
        warm = net.root / "warm.bin"
        warm.write_bytes(seeded_bytes(MIB, 999))
        put(net, warm, net.keys[1])  # connections and caches warm before measuring
        for run_index in range(args.repeat):
            source = net.root / f"record-{run_index}.bin"
            source.write_bytes(seeded_bytes(int(args.size_mib * MIB), run_index))
            for holder, row in enumerate(measure_put(net, source, net.keys[1]), start=1):
                rows.append({"run": run_index, "holder": holder, **row})
            source.unlink()
    finally:
        net.stop_all()
    print(f"{args.nodes} daemons, k={args.k} n={args.n}, {args.size_mib:g} MiB puts from node0")
    print_table(
        ["run", "holder", "MiB in", "CPU ms/MiB", "peak RSS MiB", "peak growth MiB"],
        [
            [r[name] for name in ("run", "holder", "received_mib", "cpu_ms_per_mib")]
            + [r["peak_rss_mib"], r["peak_growth_mib"]]
            for r in rows
        ],
    )
    figures = {
        "holder_cpu_ms_per_mib_median": statistics.median(r["cpu_ms_per_mib"] for r in rows),
        "holder_peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in rows),
        "holder_peak_rss_mib_max": max(r["peak_rss_mib"] for r in rows),
        "holder_peak_growth_mib_median": statistics.median(r["peak_growth_mib"] for r in rows),
    }
    print(", ".join(f"{name} {value:g}" for name, value in figures.items()))
    return figures


if __name__ == "__main__":
    main()
