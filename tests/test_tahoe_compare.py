"""benchmarks.cluster --compare tahoe: the grid's config stays on 127.0.0.1, the figures add up.

The slow test needs tahoe-lafs (the bench extra); CI installs only the test
extra, so there it is skipped with that reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.tahoe_compare import summarise
from benchmarks.tahoe_grid import (
    GridError,
    GridShape,
    client_command,
    connected_servers,
    decode_proc_address,
    introducer_command,
    loopback_problems,
    storage_command,
    tahoe_available,
)

REPO = Path(__file__).resolve().parents[1]
FURL = "pb://abc@tcp:127.0.0.1:4000/def"

GOOD_CFG = """
[node]
nickname = storage0
reveal-IP-address = true
web.port =
tub.port = tcp:4001:interface=127.0.0.1
tub.location = tcp:127.0.0.1:4001
[client]
shares.needed = 3
"""


def option(command: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def test_every_node_listens_and_advertises_only_on_loopback(tmp_path: Path) -> None:
    shape = GridShape(servers=5, k=3, n=5)
    commands = [
        introducer_command(tmp_path / "introducer", 4000),
        storage_command(tmp_path / "storage0", 4001, FURL, shape, 0),
        client_command(tmp_path / "client", 4002, 4003, FURL, shape),
    ]
    for command, port in zip(commands, (4000, 4001, 4002), strict=True):
        assert option(command, "listen") == "tcp"  # no tor, no i2p
        assert option(command, "port") == f"tcp:{port}:interface=127.0.0.1"
        assert option(command, "location") == f"tcp:127.0.0.1:{port}"
        assert not any(arg.startswith(("--hostname", "--tor", "--i2p")) for arg in command)
    assert option(commands[1], "webport") == "none"
    assert option(commands[2], "webport") == "tcp:4003:interface=127.0.0.1"
    assert "--no-storage" in commands[2] and "--no-storage" not in commands[1]


@pytest.mark.parametrize(
    ("servers", "n", "happy"),
    [(5, 5, 5), (7, 5, 5), (3, 5, 3)],
)
def test_uploads_must_use_every_server_they_can(servers: int, n: int, happy: int) -> None:
    shape = GridShape(servers=servers, k=3, n=n)
    command = client_command(Path("c"), 1, 2, FURL, shape)
    assert option(command, "shares-needed") == "3"
    assert option(command, "shares-total") == str(n)
    assert option(command, "shares-happy") == str(happy)


@pytest.mark.parametrize(("servers", "k", "n"), [(0, 3, 5), (5, 0, 5), (5, 6, 5), (5, 3, 257)])
def test_impossible_grid_shapes_are_refused(servers: int, k: int, n: int) -> None:
    with pytest.raises(GridError):
        GridShape(servers=servers, k=k, n=n).check()


def test_a_loopback_config_passes() -> None:
    assert loopback_problems(GOOD_CFG) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ("tub.port = tcp:4001", "tub.port"),
        ("tub.port = tcp:4001:interface=0.0.0.0", "tub.port"),
        ("tub.port = tcp:4001:interface=127.0.0.1,tor:4002", "tub.port"),
        ("tub.location = tcp:192.168.1.5:4001", "tub.location"),
        ("tub.location = tcp:127.0.0.1:4001,tor:abc.onion:80", "tub.location"),
        ("web.port = tcp:3456", "web.port"),
        ("reveal-IP-address = false", "reveal-IP-address"),
    ],
)
def test_any_address_beyond_loopback_is_caught(change: str, complaint: str) -> None:
    key = change.split(" = ", maxsplit=1)[0]
    lines = [change if line.startswith(key + " ") else line for line in GOOD_CFG.splitlines()]
    problems = loopback_problems("\n".join(lines))
    assert any(complaint in problem for problem in problems), problems


def test_tor_or_i2p_sections_are_caught() -> None:
    assert loopback_problems(GOOD_CFG + "[tor]\nenabled = true\n") != []
    assert loopback_problems(GOOD_CFG + "[connections]\ntcp = tor\n") != []


def test_connected_servers_counts_both_storage_protocols() -> None:
    welcome: dict[str, object] = {
        "servers": [
            {"connection_status": "connected"},
            {"connection_status": "Connected to tcp:127.0.0.1:4001 via tcp"},
            {"connection_status": "Trying to connect"},
            {"connection_status": "Reconnecting in 3 seconds (last attempt 1s ago)"},
            "not a server",
        ]
    }
    assert connected_servers(welcome) == 2
    with pytest.raises(GridError, match="server list"):
        connected_servers({"introducers": {}})


def test_proc_net_addresses_decode() -> None:
    assert decode_proc_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert decode_proc_address("00000000:0050") == ("0.0.0.0", 80)
    assert decode_proc_address("00000000000000000000000001000000:0016") == ("::1", 22)
    mapped = "0000000000000000FFFF00000100007F:0016"
    assert decode_proc_address(mapped) == ("127.0.0.1", 22)


def test_ratios_pair_each_round_and_take_medians() -> None:
    mib = 1024 * 1024 / 1e6  # seconds for 1 MiB at 1 MB/s
    samples: list[list[Any]] = [
        # size, round, system, op, seconds, MB/s (ignored: recomputed from seconds)
        [1.0, 0, "medvault", "put", mib / 30, 0],
        [1.0, 0, "tahoe", "put", mib / 10, 0],
        [1.0, 1, "tahoe", "put", mib / 5, 0],  # a slow spell hits round 1 for both
        [1.0, 1, "medvault", "put", mib / 10, 0],
        [1.0, 2, "medvault", "put", mib / 60, 0],
        [1.0, 2, "tahoe", "put", mib / 20, 0],
        *[[1.0, r, s, "get", mib / 10, 0] for r in range(3) for s in ("medvault", "tahoe")],
    ]
    (row,) = summarise(samples)
    assert row["put_mbps"] == 30 and row["tahoe_put_mbps"] == 10
    assert row["ratio_put"] == 3.0
    assert row["round_ratio_put"] == 3.0  # 3x, 2x, 3x
    assert row["ratio_get"] == row["round_ratio_get"] == 1.0
    assert row["rounds"] == 3


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--compare", "lafs"], "invalid choice"),
        (["--compare", "tahoe", "--nodes", "1"], "at least 2"),
        (["--compare", "tahoe", "--repeat", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    args: list[str], error: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", *args, "--out", str(tmp_path)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert error in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not tahoe_available(),
    reason="tahoe-lafs is not installed (bench extra: pip install -e '.[bench]'); CI skips this",
)
def test_compare_tahoe_reads_back_both_sides(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.cluster",
            *("--compare", "tahoe", "--nodes", "3", "-k", "2", "-n", "3"),
            *("--sizes-mib", "0.25", "--repeat", "1", "--segment-size", "65536"),
            *("--out", str(tmp_path / "out"), "--dir", str(tmp_path / "nodes"), "--json"),
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # Every read is compared with its source byte for byte, or the run exits non-zero.
    assert figures["verified_reads_medvault"] == figures["verified_reads_tahoe"] == 1
    for name in ("put_mbps", "get_mbps", "tahoe_put_mbps", "tahoe_get_mbps"):
        assert figures[f"{name}_0.25mib"] > 0
    assert figures["ratio_put_0.25mib"] > 0 and figures["round_ratio_get_0.25mib"] > 0
    assert "Tahoe MB/s" in result.stdout and "median round ratio" in result.stdout
    samples = (tmp_path / "out" / "cluster_tahoe_samples.csv").read_text().splitlines()
    assert samples[0] == "size_mib,round,system,op,seconds,mbps" and len(samples) == 5
    # Every Tahoe node went down with the benchmark: none of their processes remain.
    assert running_with(f"{tmp_path}") == []


def running_with(text: str) -> list[int]:
    """Processes whose command line mentions `text` (the grid's directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and "benchmarks.tahoe_node" in cmdline and text in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(tahoe_available(), reason="tahoe-lafs is installed here")
def test_without_tahoe_the_comparison_says_what_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--compare", "tahoe", "--out", f"{tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "needs tahoe-lafs" in result.stderr and "[bench]" in result.stderr
