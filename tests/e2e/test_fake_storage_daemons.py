"""A compromised member that acknowledges shards and keeps none, on real daemons: puts
never count it (they prove their holders), `check` shows its claims as failed audits,
every record stays readable without it, and the writer logs the offence once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 5, "repair_interval": 3600},
    "gossip": {"interval": 0.5},
}
LIARS = (1, 2)


def test_a_member_that_keeps_nothing_is_never_counted(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 7, SETTINGS)
    daemons.extend(net.nodes)
    for liar in LIARS:
        net.nodes[liar].lies = ("fake-storage",)
    net.start_all()
    liar_keys = {net.keys[i] for i in LIARS}
    records: dict[str, bytes] = {}
    for number in range(4):
        source = tmp_path / f"scan{number}.bin"
        source.write_bytes(os.urandom(300_000 + 100_000 * number))
        put = net.cli(0, "put", str(source))
        assert put["holders"] == 5 and not put["degraded"]  # five proven holders
        records[put["record_id"]] = source.read_bytes()

    rows = net.cli(0, "check", "--all")["records"]
    claimed = 0
    for row in rows:
        health = row["health"]
        assert health["healthy"]
        assert not liar_keys & set(health["holders"])
        claimed += sum(1 for node in health["unproven"] if node in liar_keys)
    assert claimed >= 1  # the liars claimed indices, and the audit did not believe them

    proofs = net.nodes[0].wait_for("holder failed a storage proof")
    assert proofs["peer"] in {key[:16] for key in liar_keys}
    for liar in LIARS:
        net.nodes[liar].stop()
    for record_id, data in records.items():
        out = tmp_path / f"{record_id}.out"
        net.cli(0, "get", record_id, "-o", str(out))
        assert out.read_bytes() == data
    net.nodes[0].drain()
    logged = [e for e in net.nodes[0].events if e.get("event") == "holder failed a storage proof"]
    assert len(logged) <= len(LIARS)  # once per liar, however often it lied
