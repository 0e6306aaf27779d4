"""The benchmarks keep working: tiny runs, and the --json last-line contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_json(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", *args, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # A failing benchmark names its reason: the end of its output goes into the report.
    assert result.returncode == 0, f"{args[0]} exited {result.returncode}:\n{result.stderr[-3000:]}"
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(figures, dict)
    return figures


def test_codec_benchmark_reports_every_grid_point() -> None:
    figures = run_json("benchmarks.codec", "--segment-size", "20000", "--repeat", "1")
    for k, n in ((4, 6), (10, 14), (16, 20)):
        assert figures[f"medvault_{k}_{n}_encode_mbps"] > 0
        assert figures[f"medvault_{k}_{n}_decode_mbps"] > 0
        assert figures[f"medvault_numpy_{k}_{n}_decode_mbps"] > 0


def test_pipeline_benchmark_round_trips_and_reports() -> None:
    figures = run_json("benchmarks.pipeline", "--size-mib", "0.5", "--segment-size", "65536")
    assert figures["segments"] == 8
    assert figures["encode_mbps_median"] > 0 and figures["decode_mbps_median"] > 0
    assert 0 < figures["peak_rss_mib"] < 1024
    split = figures["stage_ms_per_mib"]
    assert split["encrypt into a reused buffer"] > 0 and split["rs parity (reused buffer)"] > 0


def test_padding_benchmark_measures_stored_bytes() -> None:
    figures = run_json("benchmarks.padding", "--max-mib", "0.01", "--samples", "2000")
    rows = {row["size"]: row for row in figures["records"]}
    assert rows[129]["padded"] == 144 and rows[129]["plain_overhead_pct"] == 11.63
    assert all(r["blocks_v2"] >= r["blocks_v1"] for r in rows.values())
    assert 0 < figures["sampled_mean_overhead_pct"] < figures["sampled_max_overhead_pct"] < 11.7
    assert figures["distinct_sizes_to_1mib"] == 300


def test_transport_benchmark_measures_every_figure() -> None:
    figures = run_json(
        "benchmarks.transport",
        "--bulk-mib",
        "1",
        "--repeat",
        "1",
        "--calls",
        "64",
        "--handshakes",
        "4",
    )
    for key in (
        "bulk_mbps_median",
        "rpc_sequential_per_s",
        "rpc_32_in_flight_per_s",
        "handshakes_per_s",
    ):
        assert figures[key] > 0


def test_fuzz_script_counts_inputs() -> None:
    figures = run_json("benchmarks.fuzz", "--examples", "20", "--target", "envelope")
    assert figures["engine"] == "hypothesis"
    assert figures["envelope_inputs"] == figures["total_inputs"] > 0


def test_lookup_benchmark_writes_csv_png_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "lookup"
    figures = run_json(
        "benchmarks.lookup", "--sizes", "20", "30", "--lookups", "5", "--out", str(out)
    )
    assert 0 <= figures["accuracy"] <= 1 and figures["median_hops"] >= 0
    assert [row["size"] for row in figures["sizes"]] == [20, 30]
    assert (out / "lookup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = (out / "lookup_samples.csv").read_text().splitlines()
    assert samples[0].startswith("nodes,hops") and len(samples) == 1 + 10


def test_gossip_benchmark_writes_csv_png_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "gossip"
    figures = run_json(
        "benchmarks.gossip",
        "--sizes",
        "20",
        "--losses",
        "0",
        "0.1",
        "--trials",
        "2",
        "--out",
        str(out),
    )
    assert figures["converged"] is True and figures["t99_seconds"] > 0
    assert [(c["size"], c["loss"]) for c in figures["cases"]] == [(20, 0.0), (20, 0.1)]
    assert (out / "gossip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gossip_samples.csv").read_text().splitlines()[0].startswith("nodes,loss")


@pytest.mark.slow
def test_cluster_benchmark_runs_real_daemons(tmp_path: Path) -> None:
    figures = run_json(
        "benchmarks.cluster",
        "--nodes",
        "3",
        "-k",
        "2",
        "-n",
        "3",
        "--sizes-mib",
        "0.25",
        "--repeat",
        "1",
        "--out",
        str(tmp_path),
    )
    assert figures["put_mbps_0.25mib"] > 0 and figures["get_mbps_0.25mib"] > 0
    assert 0 < figures["idle_rss_mib_max"] <= figures["peak_rss_mib_max"] < 1024
    # CPU per MiB: the writer's (reader's) share is part of all the daemons' CPU
    cpu = {key.removesuffix("_0.25mib"): value for key, value in figures.items() if "_cpu_" in key}
    assert 0 <= cpu["put_cpu_writer_ms_per_mib"] <= cpu["put_cpu_all_ms_per_mib"]
    assert cpu["put_cpu_all_ms_per_mib"] > 0
    assert 0 <= cpu["get_cpu_reader_ms_per_mib"] <= cpu["get_cpu_all_ms_per_mib"]
    assert (tmp_path / "cluster.png").stat().st_size > 0
    assert (tmp_path / "cluster_summary.csv").read_text().startswith("size_mib,")


@pytest.mark.slow
def test_holder_benchmark_measures_each_holder() -> None:
    figures = run_json(
        "benchmarks.holder",
        "--nodes",
        "3",
        "-k",
        "2",
        "-n",
        "3",
        "--size-mib",
        "1",
        "--repeat",
        "1",
    )
    assert figures["holder_cpu_ms_per_mib_median"] > 0
    assert 0 < figures["holder_peak_rss_mib_median"] <= figures["holder_peak_rss_mib_max"] < 1024


@pytest.mark.slow
def test_http_benchmark_compares_http_with_the_control_socket(tmp_path: Path) -> None:
    figures = run_json(
        "benchmarks.http",
        *("--nodes", "4", "-k", "2", "-n", "3", "--size", "1MiB", "--rounds", "2"),
        *("--memory-size", "2MiB", "--dir", str(tmp_path)),
    )
    for path in ("http", "control"):
        assert figures[f"{path}_put_mbps"] > 0 and figures[f"{path}_get_mbps"] > 0
        assert figures[f"{path}_put_daemon_cpu_s"] >= 0 <= figures[f"{path}_get_daemon_cpu_s"]
    assert figures["put_ratio"] > 0 and figures["get_ratio"] > 0
    assert figures["put_ratio_paired"] > 0 and figures["get_ratio_paired"] > 0
    assert [(s["round"], s["path"], s["op"]) for s in figures["samples"]][::2] == [
        (0, "http", "put"),
        (0, "control", "put"),
        (1, "control", "put"),  # the two ways alternate which goes first
        (1, "http", "put"),
    ]
    rows = {(r["path"], r["op"]): r for r in figures["memory"]}
    assert set(rows) == {(p, o) for p in ("http", "control") for o in ("put", "get")}
    assert all(0 < r["rss_before_mib"] <= r["peak_mib"] < 1024 for r in rows.values())


def test_durability_benchmark_writes_every_experiment(tmp_path: Path) -> None:
    out = tmp_path / "durability"
    figures = run_json(
        "benchmarks.durability",
        *("--nodes", "8", "--records", "4", "--schemes", "1/2", "2/4"),
        *("--down", "0.3", "--samples", "8", "--duration", "180", "--jobs", "2"),
        *("--out", str(out)),
    )
    assert figures["availability_cells"] == 2
    assert 0 <= figures["availability_within_ci"] <= 2
    for scheme in ("1_2", "2_4"):
        assert figures[f"sequential_{scheme}_repair_min_readable"] == 1.0
        assert 0 <= figures[f"churn_{scheme}_norepair_final_readable"] <= 1
        assert 0 <= figures[f"sites_{scheme}_blind_2_readable"] <= 1
    assert 0 <= figures["disaster_2_4_aware_repair_2_readable"] <= 1
    for name in ("availability", "sequential", "sites", "site_disasters", "churn"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len((out / f"{name}.csv").read_text().splitlines()) > 1


def test_churn_benchmark_probes_every_rate(tmp_path: Path) -> None:
    out = tmp_path / "churn"
    figures = run_json(
        "benchmarks.churn",
        *("--rates", "0", "6", "--nodes", "8", "--records", "4", "--scheme", "2/4"),
        *("--duration", "90", "--probe-every", "10", "--out", str(out)),
    )
    rates = figures["rates"]
    assert [r["rate_per_min"] for r in rates] == [0, 6]
    for row in rates:
        assert row["lookups"] > 0 and row["gets"] > 0 and row["ledger_entries"] > 0
        assert 0 <= row["lookup_accuracy"] <= 1 and 0 <= row["get_success"] <= 1
    assert rates[0]["get_success"] == 1.0  # nothing fails without churn
    assert (out / "churn_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "churn_probes.csv").read_text().splitlines()) > 6


def test_report_runs_everything_and_writes_one_page(tmp_path: Path) -> None:
    out = tmp_path / "report"
    figures = run_json("benchmarks.report", "--scale", "tiny", "--out", str(out))
    assert figures["durability"]["availability_cells"] == 3
    assert [r["rate_per_min"] for r in figures["churn"]] == [0, 6]
    page = (out / "report.md").read_text()
    for title in ("Availability", "Sequential loss", "Correlated failures", "Churn over time"):
        assert f"## {title}" in page
    images = [line.split("(")[1].rstrip(")") for line in page.splitlines() if "![" in line]
    assert len(images) == 6
    for image in images:
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stall_benchmark_measures_both_ways_of_decoding() -> None:
    figures = run_json("benchmarks.stall", "--messages", "2")
    assert figures["message_bytes"] > 4_000_000
    for mode in ("inline", "worker"):
        assert figures[f"{mode}_max_gap_s"] >= 0
        assert figures[f"{mode}_seconds_per_message"] > 0


def test_ledger_fold_benchmark_times_puts_at_each_size() -> None:
    figures = run_json(
        "benchmarks.ledger_fold",
        *("--sizes", "200", "1000", "--puts", "10", "--authors", "20", "--jobs", "1"),
    )
    assert [row["entries"] for row in figures["sizes"]] == [200 + 30, 1000 + 60]
    assert 0 < figures["median_ms"] <= figures["p90_ms"] and figures["old_step_ms"] > 0


def test_attack_benchmark_counts_puts_reads_and_failed_audits() -> None:
    figures = run_json("benchmarks.attacks", "--nodes", "7", "--liars", "2", "--puts", "3")
    assert figures["recorded"] + figures["refused"] == 3
    # Liars are never counted, so every recorded record reads back without them.
    assert figures["readable_without_liars"] == figures["recorded"]
    assert figures["claims_failing_audit"] >= figures["liar_claims"]  # indices >= claims


def test_wallet_scan_benchmark_finds_exactly_her_grants() -> None:
    figures = run_json(
        "benchmarks.wallet_scan",
        *("--grants", "600", "--hers", "5", "--real-decoys", "20", "--repeat", "1"),
    )
    assert figures["grants"] == 600 and figures["hers_found"] == figures["opened"] == 5
    assert figures["grants_per_s"] > 0 and figures["scan_seconds"] > 0
