"""What every benchmark shares: seeded data, median timing, the --json contract."""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MB = 1e6
MIB = 1024 * 1024


def seeded_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    """Median wall time of `fn` over `repeat` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="end with one line of JSON figures")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    return p


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for number, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def emit_json(figures: dict[str, Any], enabled: bool) -> None:
    if enabled:
        print(json.dumps(figures, sort_keys=True))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_summary_csv(path: Path, summary: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=list(summary[0]))
        table.writeheader()
        table.writerows(summary)


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (imported only when plotting)."""
    import matplotlib  # noqa: PLC0415 - plotting is optional work

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def size_axis(axis: Any, sizes: Sequence[int]) -> None:
    """A log-scale x axis labelled with exactly the network sizes measured."""
    axis.set_xscale("log")
    axis.set_xticks(list(sizes), [str(n) for n in sizes])
    axis.minorticks_off()


def save_figure(figure: Any, path: Path, caption: str) -> None:
    """Caption under the plots (the parameters), then write the PNG."""
    figure.text(0.5, 0.01, caption, ha="center", fontsize=8)
    figure.tight_layout(rect=(0, 0.04, 1, 0.95))
    figure.savefig(path, dpi=120)
    pyplot().close(figure)
