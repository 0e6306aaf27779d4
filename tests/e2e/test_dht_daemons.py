"""Four real daemons form a DHT through the CLI; one restarts without bootstrap peers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from node.sim.localnet import Daemon, free_ports, medvault

pytestmark = pytest.mark.slow


def saved_peers(path: Path) -> set[str]:
    document = json.loads((path / "peers.json").read_text())
    return {entry["public_key"] for entry in document["contacts"]}


def test_daemons_join_save_their_tables_and_rejoin_alone(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    ports = dict(zip("abcd", free_ports(4), strict=True))
    medvault(
        "init",
        "--data-dir",
        str(tmp_path / "a"),
        "--listen",
        f"127.0.0.1:{ports['a']}",
        "--new-network",
        "--open-network",  # (membership is tested in test_transport_daemons)
    )
    a = Daemon(tmp_path / "a")
    daemons.append(a)
    a.start()
    address = a.wait_for("listening")["address"]
    a_key = json.loads(medvault("id", "--data-dir", str(tmp_path / "a"), "--json").stdout)[
        "public_key"
    ]
    keys = {"a": a_key}
    others = []
    for name in ("b", "c", "d"):
        path = tmp_path / name
        medvault(
            "init",
            "--data-dir",
            str(path),
            "--listen",
            "127.0.0.1:0",
            "--network-key",
            str(tmp_path / "a" / "network.key"),
            "--bootstrap",
            f"{a_key}@{address}",
        )
        keys[name] = json.loads(medvault("id", "--data-dir", str(path), "--json").stdout)[
            "public_key"
        ]
        daemon = Daemon(path)
        daemons.append(daemon)
        daemon.start()
        assert daemon.wait_for("joined")["contacts"] >= 1
        others.append(daemon)
    b = others[0]
    assert [d.stop() for d in (*others, a)] == [0, 0, 0, 0]

    # Every node saved what it knows; the first node met all the others.
    assert saved_peers(tmp_path / "a") == {keys["b"], keys["c"], keys["d"]}
    assert keys["a"] in saved_peers(tmp_path / "b")

    # Restart a, c and d from their own tables, and b with no bootstrap peers at all.
    config = tmp_path / "b" / "config.toml"
    config.write_text(re.sub(r"bootstrap = \[.*\]", "bootstrap = []", config.read_text()))
    for daemon in (a, *others[1:]):
        daemon.start()
        daemon.wait_for("joined")
    b.start()
    joining = b.wait_for("joining")
    assert joining["bootstrap_peers"] == 0 and joining["restored_contacts"] >= 1
    assert b.wait_for("joined")["contacts"] >= 1
    assert [d.stop() for d in (b, a, *others[1:])] == [0, 0, 0, 0]
