"""A put keeps its promise on real daemons: a full hospital is passed over, a short put says
it is degraded (exit 3), --require-full refuses it, and an interrupted put (Ctrl-C of the CLI,
SIGTERM of the daemon) leaves no shard behind on any holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network, configure

pytestmark = pytest.mark.slow

SITES = ["a", "a", "b", "b", "c", "c", "d"]
SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 4},
    "gossip": {"interval": 0.5},
}


def hospitals(root: Path, daemons: list[Daemon], full: str) -> Network:
    net = Network(root / "net", len(SITES), SETTINGS, sites=SITES)
    for node, site in zip(net.nodes, SITES, strict=True):
        quota = 4096 if site == full else 0  # room for nothing
        configure(node.data_dir / "config.toml", {"storage": {"quota_bytes": quota}})
    daemons.extend(net.nodes)
    net.start_all()
    net.wait_complete(60)
    return net


def no_orphans(net: Network) -> bool:
    return all(net.status(i).orphan_bytes == 0 for i, n in enumerate(net.nodes) if n.running)


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)  # polling the daemons' state


def test_a_full_hospital_is_passed_over_and_a_short_put_says_so(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = hospitals(tmp_path, daemons, full="a")
    source = tmp_path / "note.bin"
    for writer in range(2, 7):
        source.write_bytes(os.urandom(1_000_000))
        put = net.run(writer, "put", str(source), "--json")
        assert put.returncode == 0, put.stderr
        reply = json.loads(put.stdout)
        assert (reply["holders"], reply["degraded"]) == (5, False)
        (report,) = net.cli(writer, "check", reply["record_id"])["records"]
        held_by = {net.index_of(key) for key in report["health"]["holders"]}
        assert len(held_by) == 5 and not held_by & {0, 1}  # nothing on the full hospital
    net.nodes[6].stop()  # hospital d goes down: four nodes with room remain
    degraded = net.run(2, "put", str(source), "--json")
    assert degraded.returncode == 3
    assert json.loads(degraded.stdout)["degraded"] is True
    assert degraded.stderr.startswith("degraded: 4 of 5 shards on distinct nodes")
    assert len(degraded.stderr.strip().splitlines()) == 1
    before = len(net.cli(2, "ledger")["entries"])
    refused = net.run(2, "put", str(source), "--require-full")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "nothing was recorded" in refused.stderr
    assert len(net.cli(2, "ledger")["entries"]) == before
    wait_until(lambda: no_orphans(net))


def test_an_interrupted_put_leaves_nothing_behind(tmp_path: Path, daemons: list[Daemon]) -> None:
    net = hospitals(tmp_path, daemons, full="none")
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(48 * 2**20))
    writer = 3
    command = [sys.executable, "-m", "node", "put", str(source)]
    cli = subprocess.Popen(
        [*command, "--data-dir", str(net.nodes[writer].data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    net.nodes[writer].wait_for("upload started", timeout=60)
    wait_until(lambda: not no_orphans(net))  # holders are taking blocks of the upload
    cli.send_signal(signal.SIGINT)  # Ctrl-C in the operator's terminal
    cli.wait(timeout=60)
    assert cli.returncode != 0
    net.nodes[writer].wait_for("upload abandoned", timeout=60)
    net.nodes[writer].wait_for("failed put dropped", timeout=60)
    assert net.cli(writer, "ls")["records"] == []
    wait_until(lambda: no_orphans(net))

    background = subprocess.Popen(
        [*command, "--data-dir", str(net.nodes[writer].data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    net.nodes[writer].wait_for("upload started", timeout=60, nth=2)
    wait_until(lambda: not no_orphans(net))  # holders are taking blocks of the upload
    assert net.nodes[writer].stop() == 0  # SIGTERM of the daemon, mid-put
    background.wait(timeout=60)
    assert background.returncode == 1
    net.nodes[writer].wait_for("failed put dropped", nth=2, timeout=10)
    wait_until(lambda: no_orphans(net))
