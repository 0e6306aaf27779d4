"""Durability and availability of records under failures, on whole simulated nodes.

    python -m benchmarks.durability [--quick] [--nodes 24] [--sites 4] [--records 24]
        [--schemes 1/2 2/4 4/8 6/12 1/3 3/9 10/14] [--down 0.1 0.2 0.3 0.4]
        [--samples 200] [--churn-every 60] [--duration 1800]
        [--experiments availability sequential sites churn] [--jobs 2]
        [--out bench-out/durability] [--seed 1] [--json]

Runs the real node code (placement, put, get, repair loop, DHT, gossip) on
the seeded simulated network; see `benchmarks/durability_runs.py` for the
four experiments. k-of-n schemes are compared with replication at the same
storage overhead: 1/2 (2x replication) with 2/4, 4/8 and 6/12; 1/3 (3x) with
3/9. Replication is the k = 1 code: each shard alone restores the record, as
a copy would. Writes availability.csv, sequential.csv, sites.csv,
site_disasters.csv, churn.csv and a PNG per table into --out, prints a
table per experiment and, with --json, ends with one line of figures.
Every run with the same arguments gives the same figures.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import durability_runs as runs
from benchmarks.durability_plots import (
    plot_availability,
    plot_churn,
    plot_sequential,
    plot_site_disasters,
    plot_sites,
)
from benchmarks.harness import emit_json, parser, print_table, write_csv
from benchmarks.simbench import Setup, parallel
from benchmarks.stats import Scheme, binomial_availability, wilson_interval

EXPERIMENTS = ("availability", "sequential", "sites", "churn")
FULL_SCHEMES = ("1/2", "2/4", "4/8", "6/12", "1/3", "3/9", "10/14")
QUICK = {
    "nodes": 16,
    "records": 12,
    "schemes": ["1/2", "2/4", "4/8", "1/3", "3/9"],
    "down": [0.2, 0.4],
    "samples": 60,
    "duration": 600.0,
}


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small run for a first look")
    p.add_argument("--nodes", type=int, default=24)
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--records", type=int, default=24)
    p.add_argument("--schemes", nargs="+", default=list(FULL_SCHEMES), metavar="K/N")
    p.add_argument("--down", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.4])
    p.add_argument("--samples", type=int, default=200, help="reads per scheme and p")
    p.add_argument("--churn-every", type=float, default=60.0, help="simulated s per replacement")
    p.add_argument("--duration", type=float, default=1800.0, help="simulated s of churn")
    p.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--out", type=Path, default=Path("bench-out/durability"))
    args = p.parse_args(argv)
    if args.quick:
        defaults = p.parse_args([])
        for name, value in QUICK.items():
            if getattr(args, name) == getattr(defaults, name):
                setattr(args, name, value)
    args.schemes = [Scheme.parse(text) for text in args.schemes]
    if not all(0.0 <= d < 1.0 for d in args.down):
        p.error("--down: probabilities must be in [0, 1)")
    too_big = [s for s in args.schemes if s.n >= args.nodes]
    if too_big:
        p.error(
            f"--nodes {args.nodes}: need more nodes than n of {', '.join(map(str, too_big))}"
            " (availability reads from a node holding none of the record)"
        )
    return args


def availability(args: argparse.Namespace, setup: Setup, figures: dict[str, Any]) -> None:
    calls = [(setup, s, args.down, args.samples, args.seed) for s in args.schemes]
    results = parallel(args.jobs, runs.availability, calls)
    rows = []
    for scheme, samples in zip(args.schemes, results, strict=True):
        for down in args.down:
            cell = [s for s in samples if s.down == down]
            readable = sum(s.readable for s in cell)
            low, high = wilson_interval(readable, len(cell))
            predicted = binomial_availability(scheme.k, scheme.n, down)
            truth = sum(s.holders_up for s in cell) / len(cell)
            rows.append(
                [
                    *(str(scheme), scheme.overhead, down, len(cell), readable / len(cell)),
                    *(low, high, predicted, truth, low <= predicted <= high),
                ]
            )
    header = [
        *("scheme", "overhead", "p_down", "samples", "measured", "ci_low", "ci_high"),
        *("binomial", "holders_up", "within_ci"),
    ]
    write_csv(args.out / "availability.csv", header, rows)
    print("\nAvailability, independent failures, no repair (95% Wilson intervals):")
    print_table(header, [[f"{v:.3f}" if isinstance(v, float) else v for v in r] for r in rows])
    within = sum(r[-1] for r in rows)
    print(f"binomial prediction inside the interval in {within} of {len(rows)} cells")
    figures["availability_cells"] = len(rows)
    figures["availability_within_ci"] = within
    plot_availability(args.out / "availability.png", rows, setup, args.samples)


def sequential(args: argparse.Namespace, setup: Setup, figures: dict[str, Any]) -> None:
    calls = [(setup, s, r, args.seed) for s in args.schemes for r in (True, False)]
    results = parallel(args.jobs, runs.sequential, calls)
    rows, table = [], []
    for (_, scheme, repair, _), run in zip(calls, results, strict=True):
        for step in run.steps:
            rows.append(
                [
                    *(str(scheme), repair, step.lost, step.readable, step.healthy),
                    *(step.repair_seconds, step.repair_bytes, step.lost_bytes),
                ]
            )
        name = f"sequential_{scheme.k}_{scheme.n}_{'repair' if repair else 'norepair'}"
        lowest = min(s.readable for s in run.steps)
        figures[f"{name}_min_readable"] = lowest
        figures[f"{name}_verified"] = run.verified / run.records
        times = sorted(s.repair_seconds for s in run.steps if s.repair_seconds is not None)
        moved = sum(s.repair_bytes for s in run.steps)
        lost = sum(s.lost_bytes for s in run.steps)
        median = times[len(times) // 2] if times else None
        per_byte = moved / lost if repair and lost else None
        if repair:
            figures[f"{name}_median_repair_s"] = median
            figures[f"{name}_bytes_per_lost_byte"] = per_byte
        table.append([str(scheme), repair, lowest, run.verified, run.records, median, per_byte])
    header = ["scheme", "repair", "nodes_lost", "readable", "healthy", "repair_s"]
    write_csv(args.out / "sequential.csv", [*header, "repair_bytes", "lost_bytes"], rows)
    print(f"\nSequential loss of {setup.nodes // 2} of {setup.nodes} nodes, one at a time:")
    print_table(
        [
            *("scheme", "repair", "min_readable", "read_at_end", "records"),
            *("median_repair_s", "moved_per_lost_byte"),
        ],
        table,
    )
    plot_sequential(args.out / "sequential.png", rows, setup)


def sites(args: argparse.Namespace, setup: Setup, figures: dict[str, Any]) -> None:
    calls = [(setup, s, aware, args.seed) for s in args.schemes for aware in (True, False)]
    results = parallel(args.jobs, runs.sites, calls)
    rows = []
    for losses in results:
        for loss in losses:
            placement = "site-aware" if loss.site_aware else "site-blind"
            rows.append(
                [
                    *(str(loss.scheme), placement, loss.sites_lost, loss.combinations),
                    *(loss.readable, loss.worst, loss.holders_up),
                ]
            )
            key = f"sites_{loss.scheme.k}_{loss.scheme.n}_{placement[5:]}_{loss.sites_lost}"
            figures[f"{key}_readable"] = loss.readable
    header = ["scheme", "placement", "sites_lost", "combinations", "readable", "worst"]
    header += ["holders_up"]
    write_csv(args.out / "sites.csv", header, rows)
    print(f"\nWhole sites cut off ({setup.sites} sites; every combination), no repair:")
    print_table(header, rows)
    plot_sites(args.out / "sites.png", rows, setup)
    site_disasters(args, setup, figures)


def site_disasters(args: argparse.Namespace, setup: Setup, figures: dict[str, Any]) -> None:
    calls = [
        (setup, s, aware, repair, args.seed)
        for s in args.schemes
        for aware in (True, False)
        for repair in (True, False)
    ]
    results = parallel(args.jobs, runs.site_disasters, calls)
    rows = []
    for steps in results:
        for step in steps:
            placement = "site-aware" if step.site_aware else "site-blind"
            rows.append(
                [
                    *(str(step.scheme), placement, step.repair, step.sites_lost),
                    *(step.readable, step.healthy),
                ]
            )
            key = f"{placement[5:]}_{'repair' if step.repair else 'norepair'}_{step.sites_lost}"
            figures[f"disaster_{step.scheme.k}_{step.scheme.n}_{key}_readable"] = step.readable
    header = ["scheme", "placement", "repair", "sites_lost", "readable", "healthy"]
    write_csv(args.out / "site_disasters.csv", header, rows)
    print(
        f"\nHospitals lost for good, one then another ({setup.sites} sites; 3 repair"
        " intervals after each):"
    )
    print_table(header, rows)
    plot_site_disasters(args.out / "site_disasters.png", rows, setup)


def churn(args: argparse.Namespace, setup: Setup, figures: dict[str, Any]) -> None:
    timing = runs.ChurnTiming(args.churn_every, args.duration, setup.repair_interval / 2)
    calls = [(setup, s, r, args.seed, timing) for s in args.schemes for r in (True, False)]
    results = parallel(args.jobs, runs.churn, calls)
    rows, table = [], []
    for (_, scheme, repair, *_), run in zip(calls, results, strict=True):
        for point in run.points:
            rows.append(
                [str(scheme), repair, point.seconds, point.replaced, point.readable, point.healthy]
            )
        final = run.points[-1].readable
        name = f"churn_{scheme.k}_{scheme.n}_{'repair' if repair else 'norepair'}"
        figures[f"{name}_final_readable"] = final
        table.append(
            [
                *(str(scheme), repair, run.points[-1].replaced, final, run.verified, run.records),
                *(run.repair_bytes / run.stored_bytes, run.all_bytes / run.stored_bytes),
            ]
        )
    header = ["scheme", "repair", "seconds", "replaced", "readable", "healthy"]
    write_csv(args.out / "churn.csv", header, rows)
    print(
        f"\nChurn: a random node replaced by an empty one every {args.churn_every:g} s"
        f" for {args.duration:g} s (simulated):"
    )
    print_table(
        [
            *("scheme", "repair", "replaced", "readable_end", "read_at_end", "records"),
            *("repair_traffic/stored", "all_traffic/stored"),
        ],
        table,
    )
    plot_churn(args.out / "churn.png", rows, setup, args.churn_every)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = arguments(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    setup = replace(Setup(), nodes=args.nodes, sites=args.sites, records=args.records)
    print(f"durability: {setup.caption()}; seed {args.seed}; output in {args.out}")
    figures: dict[str, Any] = {"nodes": args.nodes, "records": args.records, "seed": args.seed}
    steps = {"availability": availability, "sequential": sequential, "sites": sites}
    steps["churn"] = churn
    for name in args.experiments:
        steps[name](args, setup, figures)
    emit_json(figures, args.json)
    return figures


if __name__ == "__main__":
    main()
