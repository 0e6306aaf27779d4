"""Damage is found without an operator on real daemons: block files deleted, truncated or
corrupted on holders are found by the background scrub and rebuilt; `check --network`
checks every record from any node, a freshly restored empty one included."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 4, "repair_interval": 1, "scrub_bytes": 10**9},
    "gossip": {"interval": 0.5},
}


def wait_until(condition: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)  # polling the daemons' state


def block_files(node: Daemon) -> list[Path]:
    return sorted(p for p in (node.data_dir / "shards").rglob("*") if p.is_file())


def test_damaged_blocks_are_found_and_rebuilt_and_any_node_checks_the_network(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 7, SETTINGS)
    daemons.extend(net.nodes)
    net.start_all()
    source = tmp_path / "scan.bin"
    source.write_bytes(os.urandom(3 * 2**20))  # three segments: three blocks per holder
    record_id = net.cli(0, "put", str(source))["record_id"]

    def healthy() -> bool:
        (report,) = net.cli(0, "check", record_id)["records"]  # with --verify: reads all
        return bool(report["health"]["healthy"]) and not report["health"]["corrupt"]

    # Whatever repair the put's aftermath starts is over before the disks go bad (a
    # repair in flight could rewrite a deleted block and hide the damage from the scrub).
    wait_until(healthy)
    holders = [i for i in range(1, 7) if block_files(net.nodes[i])][:2]
    assert len(holders) == 2  # n - k = 2 damaged holders: still readable
    first, second = (block_files(net.nodes[i]) for i in holders)
    first[0].unlink()
    first[1].write_bytes(first[1].read_bytes()[:100])
    rotten = bytearray(second[0].read_bytes())
    rotten[50] ^= 0xFF
    second[0].write_bytes(bytes(rotten))

    for index in holders:  # each holder found its damage: its scrub, or a read (repair's)
        net.nodes[index].wait_for("damaged shard found", timeout=60)
    wait_until(healthy)
    out = tmp_path / "back.bin"
    net.cli(0, "get", record_id, "-o", str(out))
    assert out.read_bytes() == source.read_bytes()

    # A node restored empty (new identity, same network) checks every record.
    net.nodes[6].stop()
    net.replace(6)
    net.start(6)
    wait_until(lambda: len(net.cli(6, "ledger")["entries"]) >= 2)
    network = net.cli(6, "check", "--network")["records"]
    assert [r["health"]["record_id"] for r in network] == [record_id]
    assert network[0]["health"]["readable"]
    assert net.cli(6, "check", "--all")["records"] == []  # it owns and holds nothing
