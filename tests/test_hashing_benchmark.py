"""benchmarks.hashing keeps working: a tiny run reports every figure."""

from __future__ import annotations

from tests.test_benchmarks_run import run_json


def test_hashing_benchmark_reports_both_algorithms_and_the_ratio() -> None:
    figures = run_json("benchmarks.hashing", "--mib", "2", "--repeat", "1")
    for size in ("1024k", "256k"):
        for name in ("blake2b", "blake3"):
            assert figures[f"{name}_{size}_mbps"] > 0
            assert figures[f"{name}_{size}_2threads_mbps"] > 0
            assert figures[f"holder_check_{name}_{size}_mbps"] > 0
        assert figures[f"ratio_{size}"] > 0
