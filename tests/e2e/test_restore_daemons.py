"""A hospital restores a node's ledger from an older backup, as the operator guide allows:
on real daemons, its next puts follow its real feed head: no fork anywhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from node.daemon import LEDGER_FILE
from node.sim.localnet import Daemon, Network

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 2, "n": 3, "happy": 3},
    "gossip": {"interval": 0.5},
}


def test_a_node_restored_from_an_older_backup_does_not_fork_its_feed(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 4, SETTINGS)
    daemons.extend(net.nodes)
    net.start_all()
    source = tmp_path / "note.bin"
    source.write_bytes(os.urandom(10_000))
    writer = 1
    net.cli(writer, "put", str(source))
    net.nodes[writer].stop()
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in (LEDGER_FILE, LEDGER_FILE + "-wal", LEDGER_FILE + "-shm"):
        if (net.nodes[writer].data_dir / name).exists():
            shutil.copy2(net.nodes[writer].data_dir / name, backup / name)
    net.start(writer)
    later = net.cli(writer, "put", str(source))["record_id"]  # entries the backup lacks
    net.nodes[writer].stop()
    for name in (LEDGER_FILE, LEDGER_FILE + "-wal", LEDGER_FILE + "-shm"):
        (net.nodes[writer].data_dir / name).unlink(missing_ok=True)
        if (backup / name).exists():
            shutil.copy2(backup / name, net.nodes[writer].data_dir / name)
    net.start(writer)
    third = net.cli(writer, "put", str(source))["record_id"]
    mine = {r["record_id"] for r in net.cli(writer, "ls")["records"]}
    assert {later, third} <= mine and len(mine) == 3
    net.nodes[writer].wait_for("own ledger feed confirmed")
    for index in range(4):  # nobody saw a fork: every feed is one chain
        entries = net.cli(index, "ledger")["entries"]
        seqs = [e["seq"] for e in entries if e["author"] == net.keys[writer]]
        assert len(seqs) == len(set(seqs))
