"""A writer that sends one-batch indices with their storage challenge (StoreAndProve)
among older daemons that do not know the type: over real connections they answer
UNKNOWN_TYPE, the writer stores and proves there the old way, the connection stays up,
and every record is readable with the older nodes counted as proven holders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 5, "repair_interval": 3600},
    "gossip": {"interval": 0.5},
}
OLDER = [sys.executable, str(Path(__file__).with_name("older_holder.py"))]


def test_older_holders_are_stored_on_and_proven_the_old_way(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 5, SETTINGS)
    daemons.extend(net.nodes)
    for older in (1, 2):
        net.nodes[older].program = OLDER
    net.start_all()
    older_keys = {net.keys[1], net.keys[2]}
    records: dict[str, bytes] = {}
    for number in range(3):
        source = tmp_path / f"scan{number}.bin"
        source.write_bytes(os.urandom(200_000 + 50_000 * number))
        put = net.cli(0, "put", str(source))
        assert put["holders"] == 5 and not put["degraded"]  # the older ones count too
        records[put["record_id"]] = source.read_bytes()
    rows = net.cli(0, "check", "--all")["records"]
    for row in rows:
        assert row["health"]["healthy"]
        assert older_keys <= set(row["health"]["holders"])
    for record_id, data in records.items():
        out = tmp_path / f"{record_id}.out"
        net.cli(0, "get", record_id, "-o", str(out))
        assert out.read_bytes() == data
