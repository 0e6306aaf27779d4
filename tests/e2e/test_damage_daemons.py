"""Damage is found without an operator on real daemons: pack files cut short or
blocks corrupted on holders are found by the background scrub and rebuilt; `check --network`
checks every record from any node, a freshly restored empty one included."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network
from storage.store.packs import BlockLocation, read_locations

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


def blocks_on_disk(node: Daemon) -> list[BlockLocation]:
    """Where a node's blocks lie (read-only beside the running daemon), in pack order."""
    found = [where for _, where in read_locations(node.data_dir)]
    return sorted(found, key=lambda where: (where.path, where.offset))


def flip_byte(where: BlockLocation, at: int) -> None:
    with open(where.path, "r+b") as handle:
        handle.seek(where.offset + at)
        byte = handle.read(1)
        handle.seek(where.offset + at)
        handle.write(bytes([byte[0] ^ 0xFF]))


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
    holders = [i for i in range(1, 7) if blocks_on_disk(net.nodes[i])][:2]
    assert len(holders) == 2  # n - k = 2 damaged holders: still readable
    first, second = (blocks_on_disk(net.nodes[i]) for i in holders)
    flip_byte(first[0], 10)
    os.truncate(first[1].path, first[1].offset + 100)  # cut: this block and any after it
    flip_byte(second[0], 50)

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
