"""The durability bench's figures: titled, labelled, with the parameters in the caption."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import pyplot, save_figure
from benchmarks.simbench import Setup
from benchmarks.stats import Scheme, binomial_availability

Row = Sequence[Any]
MARKERS = "osD^vx*"


def _schemes(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(str(r[0]) for r in rows))


def _label(text: str) -> str:
    scheme = Scheme.parse(text)
    return f"{scheme.label} ({scheme.overhead:.2g}x)"


def plot_availability(path: Path, rows: Sequence[Row], setup: Setup, samples: int) -> None:
    plt = pyplot()
    names = _schemes(rows)
    columns = min(4, len(names))
    lines = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(
        lines, columns, figsize=(3.4 * columns, 3.0 * lines + 0.6), squeeze=False
    )
    top = max(float(r[2]) for r in rows)
    grid = [top * 1.15 * i / 60 for i in range(61)]
    for axis, name in zip(axes.flat, names, strict=False):
        scheme = Scheme.parse(name)
        mine = [r for r in rows if r[0] == name]
        axis.plot(
            grid,
            [binomial_availability(scheme.k, scheme.n, p) for p in grid],
            color="0.4",
            label="binomial",
        )
        downs = [float(r[2]) for r in mine]
        measured = [float(r[4]) for r in mine]
        below = [max(0.0, m - float(r[5])) for m, r in zip(measured, mine, strict=True)]
        above = [max(0.0, float(r[6]) - m) for m, r in zip(measured, mine, strict=True)]
        axis.errorbar(
            downs, measured, yerr=[below, above], fmt="o", capsize=3, label="measured (95% CI)"
        )
        axis.set_title(_label(name), fontsize=9)
        axis.set_xlabel("P(node down)")
        axis.set_ylabel("records readable (fraction)")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower left")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.suptitle("Availability under independent node failures, no repair: measured vs binomial")
    save_figure(
        figure,
        path,
        f"{setup.caption()}; {samples} reads per point, each with fresh failures,"
        " from a node holding none of the record",
    )


def plot_sequential(path: Path, rows: Sequence[Row], setup: Setup) -> None:
    plt = pyplot()
    figure, (with_repair, without) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for number, name in enumerate(_schemes(rows)):
        for axis, repair in ((with_repair, True), (without, False)):
            mine = [r for r in rows if r[0] == name and r[1] == repair]
            axis.plot(
                [0] + [r[2] for r in mine],
                [1.0] + [r[3] for r in mine],
                marker=MARKERS[number % len(MARKERS)],
                markersize=max(3, 9 - number),  # stacked lines stay visible where they coincide
                fillstyle="none",
                label=_label(name),
            )
    for axis, title in ((with_repair, "repair loop on"), (without, "repair loop off")):
        axis.set_title(title)
        axis.set_xlabel(f"nodes lost for good (of {setup.nodes})")
        axis.grid(alpha=0.3)
    with_repair.set_ylabel("records readable (fraction)")
    without.legend(fontsize=8, loc="lower left")
    figure.suptitle("Sequential loss of half the nodes, one at a time")
    save_figure(
        figure,
        path,
        f"{setup.caption()}; with repair, the next node dies once every readable record"
        " is back at n distinct hosts (or after 5 passes)",
    )


def plot_sites(path: Path, rows: Sequence[Row], setup: Setup) -> None:
    plt = pyplot()
    names = _schemes(rows)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    width = 0.38
    for axis, lost in zip(axes, (1, 2), strict=True):
        for offset, placement in ((-width / 2, "site-aware"), (width / 2, "site-blind")):
            mine = {r[0]: r for r in rows if r[1] == placement and r[2] == lost}
            xs = [i + offset for i in range(len(names))]
            axis.bar(xs, [mine[n][4] for n in names], width, label=f"{placement} (mean)")
            axis.plot(
                xs, [mine[n][5] for n in names], "k_", markersize=12, label=f"{placement} worst"
            )
        axis.set_xticks(range(len(names)), [_label(n) for n in names], rotation=30, fontsize=7)
        axis.set_title(f"{lost} of {setup.sites} sites cut off (every combination)")
        axis.set_ylim(0, 1.05)
        axis.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("records readable (fraction)")
    axes[1].legend(fontsize=7, loc="lower left")
    figure.suptitle("Correlated failures: whole hospitals lost, site-aware vs site-blind placement")
    save_figure(figure, path, f"{setup.caption()}; no repair; reads from a surviving site")


def plot_site_disasters(path: Path, rows: Sequence[Row], setup: Setup) -> None:
    plt = pyplot()
    names = _schemes(rows)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    variants = [
        (placement, repair)
        for placement in ("site-aware", "site-blind")
        for repair in (True, False)
    ]
    width = 0.2
    for axis, lost in zip(axes, (1, 2), strict=True):
        for number, (placement, repair) in enumerate(variants):
            mine = {r[0]: r for r in rows if r[1] == placement and r[2] == repair and r[3] == lost}
            xs = [i + (number - 1.5) * width for i in range(len(names))]
            label = f"{placement}, repair {'on' if repair else 'off'}"
            axis.bar(xs, [mine[n][4] for n in names], width, label=label)
        axis.set_xticks(range(len(names)), [_label(n) for n in names], rotation=30, fontsize=7)
        axis.set_title(
            "after losing one hospital for good" if lost == 1 else "after losing a second one"
        )
        axis.set_ylim(0, 1.05)
        axis.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("records read intact (fraction)")
    axes[1].legend(fontsize=7, loc="lower left")
    figure.suptitle("Hospitals lost for good, one after another, with and without repair")
    save_figure(
        figure,
        path,
        f"{setup.caption()}; 3 repair intervals after each loss, then every record is read",
    )


def plot_churn(path: Path, rows: Sequence[Row], setup: Setup, every: float) -> None:
    plt = pyplot()
    figure, (readable, healthy) = plt.subplots(1, 2, figsize=(11, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, name in enumerate(_schemes(rows)):
        colour = colours[number % len(colours)]
        for repair, style in ((True, "-"), (False, "--")):
            mine = [r for r in rows if r[0] == name and r[1] == repair]
            minutes = [r[2] / 60 for r in mine]
            label = f"{_label(name)}, repair {'on' if repair else 'off'}"
            readable.plot(minutes, [r[4] for r in mine], style, color=colour, label=label)
            if repair:
                healthy.plot(minutes, [r[5] for r in mine], style, color=colour, label=label)
    readable.set_title("records readable")
    healthy.set_title("records at n distinct hosts (repair on)")
    for axis in (readable, healthy):
        axis.set_xlabel("simulated time (minutes)")
        axis.set_ylabel("fraction of records")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    readable.legend(fontsize=6, loc="lower left", ncol=2)
    figure.suptitle("Churn: nodes replaced by empty ones over time")
    save_figure(figure, path, f"{setup.caption()}; one random node replaced every {every:g} s")
