"""`benchmarks.cluster --compare tahoe`: medvault and Tahoe-LAFS timed side by side, one run.

Both networks run at once on 127.0.0.1 with the same shape (`--nodes`
storage nodes, -k, -n): medvault's daemons as the plain cluster benchmark
starts them, and a Tahoe-LAFS grid (benchmarks.tahoe_grid: introducer,
storage servers, a client whose web API is used). For each size and round
one fresh seeded file is written and stored by both, in alternating order
(even rounds medvault first, odd rounds Tahoe first) so that load on the
shared machine falls on both alike, and every dirty page is flushed (untimed)
before each system's turn: the fresh file and Tahoe-LAFS's unflushed shares
(it never fsyncs) are not written back inside medvault's timed put, whose
holders' fsyncs would wait behind them (1 MiB put ratio, 5-6 runs each:
median 2.2x without the flush, 2.6x with it; Tahoe's own rate unchanged):

- medvault: put from node0 and get on node1, timed exactly as the plain
  cluster benchmark times them (the control socket request);
- Tahoe-LAFS: `PUT /uri` of the whole file (an immutable CHK file) and a
  streamed `GET /uri/<cap>`, timed around the HTTP request.

Every byte read back is checked against the source on both sides. Ratios
are medvault/Tahoe MB/s: of the medians, and the median of each round's own
ratio (the pairing cancels slow spells that hit one round).
"""

from __future__ import annotations

import hashlib
import statistics
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.cluster import (
    get,
    network_settings,
    put,
    record_file,
    settle_writeback,
    wait_known,
)
from benchmarks.harness import MB, MIB, print_table, seeded_bytes, write_csv
from benchmarks.tahoe_grid import GridError, GridShape, TahoeGrid, tahoe_available
from node.sim.localnet import Network

TARGET_RATIO = 3.0  # issue 17: put and get at least 3x Tahoe-LAFS at 1 and 64 MiB
DEFAULT_SIZES_MIB = [1.0, 64.0]


def tahoe_version() -> str:
    try:
        return version("tahoe-lafs")
    except PackageNotFoundError:
        return "unknown"


def run_compare(args: Any, root: Path) -> dict[str, Any]:
    if not tahoe_available():
        raise SystemExit(
            "--compare tahoe needs tahoe-lafs in this environment: pip install -e '.[bench]'"
        )
    shape = GridShape(servers=args.nodes, k=args.k, n=args.n)
    try:
        with TahoeGrid(root / "tahoe", shape) as tahoe:
            tahoe.check_loopback()
            net = Network(root / "net", args.nodes, network_settings(args))
            try:
                net.start_all()
                samples = measure_both(net, tahoe, args)
            finally:
                net.stop_all()
    except GridError as error:
        raise SystemExit(f"Tahoe-LAFS grid: {error}") from error
    write_csv(
        args.out / "cluster_tahoe_samples.csv",
        ["size_mib", "round", "system", "op", "seconds", "mbps"],
        samples,
    )
    figures = report(summarise(samples), args)
    for system in ("medvault", "tahoe"):  # each one a read checked byte for byte
        figures[f"verified_reads_{system}"] = sum(
            1 for row in samples if row[2] == system and row[3] == "get"
        )
    return figures


def measure_both(net: Network, tahoe: TahoeGrid, args: Any) -> list[list[Any]]:
    """Rows (size_mib, round, system, op, seconds, MB/s), every read verified."""
    reader = net.keys[1]
    warm = seeded_bytes(args.segment_size, args.seed)  # first requests pay lookups, imports
    warm_file = record_file(net, "warm.bin", warm)
    record_id, _ = put(net, warm_file, reader)
    wait_known(net, 1, record_id)
    get(net, 1, record_id)
    cap, _ = tahoe.put(warm_file)
    tahoe.get(cap)
    warm_file.unlink()
    samples: list[list[Any]] = []
    for number, size_mib in enumerate(args.sizes_mib):
        size = int(size_mib * MIB)
        for round_ in range(args.repeat):
            data = seeded_bytes(size, args.seed + 1 + number * 1000 + round_)
            expected = hashlib.sha256(data).hexdigest()
            source = record_file(net, f"round-{size_mib:g}-{round_}.bin", data)
            del data
            sides = [("medvault", medvault_round), ("tahoe", tahoe_round)]
            for system, timed in sides if round_ % 2 == 0 else sides[::-1]:
                target = net if system == "medvault" else tahoe
                settle_writeback()
                put_s, get_s = timed(target, source, expected)
                for op, seconds in (("put", put_s), ("get", get_s)):
                    mbps = round(size / seconds / MB, 1)
                    samples.append([size_mib, round_, system, op, round(seconds, 6), mbps])
            source.unlink()
    return samples


def medvault_round(net: Any, source: Path, expected: str) -> tuple[float, float]:
    """Put on node0 (granted to node1), get on node1, as benchmarks.cluster times them."""
    record_id, put_s = put(net, source, net.keys[1])
    wait_known(net, 1, record_id)
    digest, get_s = get(net, 1, record_id)
    if digest != expected:
        raise SystemExit(f"medvault record {record_id} read back differently on node1")
    return put_s, get_s


def tahoe_round(tahoe: Any, source: Path, expected: str) -> tuple[float, float]:
    cap, put_s = tahoe.put(source)
    digest, size, get_s = tahoe.get(cap)
    if digest != expected or size != source.stat().st_size:
        raise SystemExit(f"Tahoe-LAFS read back {size} different bytes for {cap[:24]}...")
    return put_s, get_s


def summarise(samples: list[list[Any]]) -> list[dict[str, Any]]:
    """Per size: medians of each system's MB/s, their ratio, and the median per-round ratio."""
    rows = []
    for size_mib in dict.fromkeys(row[0] for row in samples):
        row: dict[str, Any] = {"size_mib": size_mib}
        for op in ("put", "get"):
            speeds: dict[str, dict[int, float]] = {"medvault": {}, "tahoe": {}}
            for size, round_, system, kind, seconds, _ in samples:
                if size == size_mib and kind == op:
                    speeds[system][round_] = size * MIB / seconds / MB
            ours = statistics.median(speeds["medvault"].values())
            theirs = statistics.median(speeds["tahoe"].values())
            per_round = [speeds["medvault"][r] / speeds["tahoe"][r] for r in speeds["tahoe"]]
            row[f"{op}_mbps"] = round(ours, 1)
            row[f"tahoe_{op}_mbps"] = round(theirs, 1)
            row[f"ratio_{op}"] = round(ours / theirs, 2)
            row[f"round_ratio_{op}"] = round(statistics.median(per_round), 2)
            row["rounds"] = len(per_round)
        rows.append(row)
    return rows


def report(summary: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    print(
        f"medvault ({args.nodes} daemons) and Tahoe-LAFS {tahoe_version()} ({args.nodes} storage"
        f" servers, introducer, client web API) on 127.0.0.1, k={args.k} n={args.n};"
        f" medvault/Tahoe ratios, target >= {TARGET_RATIO:g}x"
    )
    figures: dict[str, Any] = {
        "nodes": args.nodes,
        "k": args.k,
        "n": args.n,
        "tahoe_version": tahoe_version(),
        "target_ratio": TARGET_RATIO,
    }
    for row in summary:
        print()
        print(f"{row['size_mib']:g} MiB, {row['rounds']} rounds (medians)")
        print_table(
            ["op", "medvault MB/s", "Tahoe MB/s", "ratio", "median round ratio"],
            [
                [
                    op,
                    row[f"{op}_mbps"],
                    row[f"tahoe_{op}_mbps"],
                    f"{row[f'ratio_{op}']:.2f}x",
                    f"{row[f'round_ratio_{op}']:.2f}x",
                ]
                for op in ("put", "get")
            ],
        )
        label = f"{row['size_mib']:g}mib"
        for key in ("mbps", "ratio", "round_ratio"):
            for op in ("put", "get"):
                name = f"{op}_mbps" if key == "mbps" else f"{key}_{op}"
                figures[f"{name}_{label}"] = row[name]
                if key == "mbps":
                    figures[f"tahoe_{op}_mbps_{label}"] = row[f"tahoe_{op}_mbps"]
        figures[f"rounds_{label}"] = row["rounds"]
    return figures
