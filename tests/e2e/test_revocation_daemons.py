"""Removing a member on real daemons: an admin signs a revocation offline, one node
publishes it, every other node drops and refuses the revoked node, the record it held
a shard of is repaired elsewhere, and a restarted node still refuses it."""

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
    "storage": {"k": 3, "n": 5, "happy": 4, "repair_interval": 1},
    "gossip": {"interval": 0.5},
}


def wait_until(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)  # polling the daemons' state


def test_a_published_revocation_removes_a_member_everywhere_and_its_shards_move(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 6, SETTINGS)
    daemons.extend(net.nodes)
    net.start_all()
    source = tmp_path / "scan.bin"
    source.write_bytes(os.urandom(2**20 + 12_345))
    record_id = net.cli(0, "put", str(source))["record_id"]

    def health() -> dict[str, Any]:
        (report,) = net.cli(0, "check", record_id, "--no-verify")["records"]
        return dict(report["health"])

    wait_until(lambda: bool(health()["healthy"]))
    holders = health()["holders"]
    gone = next(i for i in range(1, 6) if net.keys[i] in holders)
    key = net.keys[gone]
    others = [i for i in range(6) if i != gone]

    revocation = tmp_path / "gone.revocation"
    signed = net.run(
        0, "membership", "revoke", key, "--authority-key", str(net.authority_key),
        "-o", str(revocation),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    published_at = time.time()
    published = net.cli(0, "membership", "publish", str(revocation))
    assert published["new"] and published["node_key"] == key
    started = time.monotonic()

    learned = [  # every other daemon learned it (pushed, or at its next connect)
        net.nodes[i].wait_for("node revoked", timeout=120, node=key[:16]) for i in others
    ]
    spread = max(e["ts"] for e in learned) - published_at
    print(f"every node revoked it {spread:.2f}s after `membership publish` started")
    for index in others:
        listed = net.cli(index, "membership", "revocations")["revocations"]
        assert [(r["node_key"], r["source"]) for r in listed] == [(key, "authority")]
        assert net.status(index).revoked_nodes == 1
    # Dropped from every routing table, and refused by every node it tries.
    wait_until(
        lambda: all(
            key not in {p["public_key"] for p in net.cli(i, "peers")["peers"]} for i in others
        )
    )
    wait_until(lambda: not any(p["reachable"] for p in net.cli(gone, "peers")["peers"]))
    assert net.status(gone).connections == 0

    # The revoked node's shard is rebuilt on a member (repair runs every second).
    wait_until(lambda: bool(health()["healthy"]) and key not in health()["holders"])
    print(f"repaired elsewhere {time.monotonic() - started:.1f}s after publication")
    out = tmp_path / "back.bin"
    net.cli(0, "get", record_id, "-o", str(out))
    assert out.read_bytes() == source.read_bytes()

    # A publication repeated changes nothing; a restarted node still refuses it.
    assert not net.cli(others[1], "membership", "publish", str(revocation))["new"]
    restarted = others[-1]
    assert net.nodes[restarted].stop() == 0
    net.start(restarted)
    assert net.status(restarted).revoked_nodes == 1
    listed = net.cli(restarted, "membership", "revocations")["revocations"]
    assert [r["node_key"] for r in listed] == [key]
