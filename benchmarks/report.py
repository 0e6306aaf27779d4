"""One command, one page: the replication bench's first look for a researcher.

    python -m benchmarks.report [--scale tiny|quick|full] [--out bench-out/report]
                                [--jobs 2] [--seed 1] [--json]

Runs `benchmarks.durability` and `benchmarks.churn` at the chosen scale
(quick: a few minutes on two cores; full: the benchmarks' own defaults,
tens of minutes; tiny: the CI smoke run), then writes report.md beside their
CSV files and plots, with tables and findings drawn from the CSVs. The same
seed gives the same page.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import churn, durability
from benchmarks.harness import emit_json, parser
from benchmarks.stats import Scheme

SCALES: dict[str, tuple[list[str], list[str]]] = {
    "tiny": (
        [
            *("--nodes", "10", "--records", "4", "--schemes", "1/2", "2/4", "4/8"),
            *("--down", "0.3", "--samples", "12", "--duration", "240"),
        ],
        [
            *("--rates", "0", "6", "--nodes", "8", "--records", "4", "--scheme", "2/4"),
            *("--duration", "120", "--probe-every", "15"),
        ],
    ),
    "quick": (["--quick"], ["--quick"]),
    "full": ([], []),
}


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def table(headers: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in line) + " |" for line in body]
    return "\n".join(lines)


def label(text: str) -> str:
    return Scheme.parse(text).label


def availability_section(out: Path) -> str:
    data = rows(out / "availability.csv")
    inside = sum(r["within_ci"] == "True" for r in data)
    body = [
        [
            label(r["scheme"]),
            f"{float(r['overhead']):.2g}x",
            r["p_down"],
            f"{float(r['measured']):.3f} [{float(r['ci_low']):.3f}, {float(r['ci_high']):.3f}]",
            f"{float(r['binomial']):.3f}",
            "yes" if r["within_ci"] == "True" else "**no**",
        ]
        for r in data
    ]
    agree = sum(r["measured"] == r["holders_up"] for r in data)
    return "\n\n".join(
        [
            "## Availability under independent failures (no repair)",
            "![availability](durability/availability.png)",
            table(
                ["scheme", "overhead", "P(down)", "measured [95% CI]", "binomial", "inside"], body
            ),
            f"The binomial prediction lies inside the measured 95% interval in **{inside} of"
            f" {len(data)}** cells (a 95% interval misses about 1 cell in 20 by chance:"
            f" {0.05 * len(data):.1f} expected here). The real get path read a record"
            " exactly when k distinct holders were reachable in"
            f" {agree} of {len(data)} cells (the formula's assumption: n distinct holders that"
            " fail independently; site-aware placement gives every record n distinct nodes, so"
            " they should differ only by sampling noise). The binomial itself says that at"
            " equal overhead wider codes (4/8 over 2/4 over 2x replication) are more available"
            " while failures are rare, and lose that edge as P(down) approaches 1 - k/n.",
        ]
    )


def sequential_section(out: Path) -> str:
    data = rows(out / "sequential.csv")
    body = []
    for name in dict.fromkeys(r["scheme"] for r in data):
        for repair in ("True", "False"):
            mine = [r for r in data if r["scheme"] == name and r["repair"] == repair]
            times = sorted(float(r["repair_s"]) for r in mine if r["repair_s"])
            moved = sum(int(r["repair_bytes"]) for r in mine)
            lost = sum(int(r["lost_bytes"]) for r in mine)
            body.append(
                [
                    label(name),
                    "on" if repair == "True" else "off",
                    f"{min(float(r['readable']) for r in mine):.3f}",
                    f"{times[len(times) // 2]:.0f} s" if times else "-",
                    f"{moved / lost:.2f}" if repair == "True" and lost else "-",
                ]
            )
    return "\n\n".join(
        [
            "## Sequential loss of half the nodes",
            "![sequential](durability/sequential.png)",
            table(
                [
                    *("scheme", "repair", "lowest readable fraction", "median time to repair"),
                    "shard bytes moved per byte lost",
                ],
                body,
            ),
            "With the repair loop on, the next node dies only after every readable record is"
            " back at n distinct hosts. Time to repair is dominated by the repair interval (a"
            " loss is noticed at the next pass). Rebuilding a k-of-n shard reads k shards and"
            " writes one, so repair traffic per lost byte grows with k (about k + 1), while"
            " replication copies one.",
        ]
    )


def sites_section(out: Path) -> str:
    data = rows(out / "sites.csv")
    body = [
        [
            *(label(r["scheme"]), r["placement"], r["sites_lost"]),
            *(f"{float(r['readable']):.3f}", f"{float(r['worst']):.3f}"),
        ]
        for r in data
    ]
    return "\n\n".join(
        [
            "## Correlated failures: whole hospitals lost",
            "![sites](durability/sites.png)",
            table(["scheme", "placement", "sites lost", "readable (mean)", "worst case"], body),
            "Site-aware placement spreads a record's n shards evenly over the sites, so"
            " losing s of S sites removes at most ceil(n/S) shards per site lost; placement"
            " that ignores sites (every node its own site) can stack shards in one hospital.",
            "### Hospitals lost for good, one after another",
            "![site disasters](durability/site_disasters.png)",
            table(
                ["scheme", "placement", "repair", "hospitals lost", "read intact"],
                [
                    [
                        *(label(r["scheme"]), r["placement"]),
                        "on" if r["repair"] == "True" else "off",
                        *(r["sites_lost"], f"{float(r['readable']):.3f}"),
                    ]
                    for r in rows(out / "site_disasters.csv")
                ],
            ),
            "Between the two losses the repair loop has three intervals to rebuild the"
            " first hospital's shards on the surviving sites.",
        ]
    )


def churn_sections(churn_out: Path) -> str:
    data = rows(churn_out / "churn_summary.csv")
    keys = ["rate_per_min", "lookup_success", "lookup_accuracy", "get_success"]
    keys += ["get_median_s", "get_p90_s", "ledger_median_s", "ledger_p90_s"]
    return "\n\n".join(
        [
            "## Churn over time",
            "![churn](durability/churn.png)",
            "Nodes are replaced by empty ones at a fixed interval. Without repair, records"
            " decay once more than n - k of their holders have been replaced; with repair"
            " they stay readable as long as a pass completes between losses.",
            "## Under rising churn: lookups, gets and ledger gossip",
            "![churn rates](churn/churn_rates.png)",
            table(keys, [[r[k] for k in keys] for r in data]),
            churn_finding(data),
        ]
    )


def churn_finding(data: list[dict[str, str]]) -> str:
    calm, worst = data[0], data[-1]
    return (
        f"From {calm['rate_per_min']} to {worst['rate_per_min']} replacements per minute,"
        f" gets that came back intact went from {float(calm['get_success']):.0%} to"
        f" {float(worst['get_success']):.0%} and their median latency from"
        f" {calm['get_median_s']} s to {worst['get_median_s']} s; lookups found the truly"
        f" closest node in {float(calm['lookup_success']):.0%} and"
        f" {float(worst['lookup_success']):.0%} of probes; a ledger entry reached every live"
        f" node in a median {calm['ledger_median_s']} s and {worst['ledger_median_s']} s."
        " Readers and lookups wait out the query and call timeouts of nodes that have left,"
        " which is where most of the added latency goes."
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--out", type=Path, default=Path("bench-out/report"))
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    durability_args, churn_args = SCALES[args.scale]
    common = ["--seed", str(args.seed), "--jobs", str(args.jobs)]
    durability_out, churn_out = args.out / "durability", args.out / "churn"
    figures = durability.main([*durability_args, *common, "--out", str(durability_out)])
    churn_summary = churn.main([*churn_args, *common, "--out", str(churn_out)])
    page = "\n\n".join(
        [
            "# medvault replication bench: first look",
            f"Made by `python -m benchmarks.report --scale {args.scale} --seed {args.seed}`."
            " Every figure comes from whole medvault nodes (placement, put, get, repair loop,"
            " DHT, gossip: the daemon's code) on a seeded simulated network under a virtual"
            " clock; times are simulated seconds. CSV files are beside the plots.",
            availability_section(durability_out),
            sequential_section(durability_out),
            sites_section(durability_out),
            churn_sections(churn_out),
            "## Full runs\n\n`python -m benchmarks.durability` and `python -m benchmarks.churn`"
            " take parameters for size and duration (`--help`); `--scale full` runs both at"
            " their defaults.",
        ]
    )
    (args.out / "report.md").write_text(page + "\n")
    print(f"report: {args.out / 'report.md'}")
    emit_json({"durability": figures, "churn": churn_summary}, args.json)
    return figures


if __name__ == "__main__":
    main()
