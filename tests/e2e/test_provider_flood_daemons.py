"""DHT floods by a compromised member against real daemons: provider records it signs
for other identities (to hide a record's real holders among its own) are refused, and
its own announcements of junk keys stop at the per-provider cap, so the daemon's store
keeps room for honest nodes' announcements and records stay findable and readable."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from node.assembly import Node
from node.config.datadir import DataDir
from node.sim.localnet import Daemon, Network
from protocol.dht.messages import AddProvider, Stored
from protocol.dht.store import StoreLimits, make_provider
from tests.e2e.member import Member

pytestmark = pytest.mark.slow

HONEST = 4
SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 2, "n": 4, "happy": 4, "repair_interval": 3600},
    "gossip": {"interval": 0.5},
}
CAP = StoreLimits().max_keys_per_provider


async def flood_providers(node: Node) -> dict[str, int]:
    """To one daemon: 64 forged providers for one key, then CAP + 100 junk keys of its own."""
    found = await node.dht.find_node(node.dht.contact.node_id)
    target = next(c for c in found.closest if c.public_key != node.public_key)
    expires = int(time.time()) + 3600
    counts = {"forged_accepted": 0, "own_accepted": 0, "own_refused": 0}
    key = os.urandom(20)
    for _ in range(64):
        other = nacl.signing.SigningKey.generate()  # a valid signature, but not the sender's
        record = make_provider(other, key, "127.0.0.1:9", expires)
        reply = await node.port.call(target, AddProvider(node.dht.info, record), 30)
        assert isinstance(reply, Stored)
        counts["forged_accepted"] += reply.accepted
    for _ in range(CAP + 100):
        record = make_provider(
            node.parts.identity, os.urandom(20), node.dht.contact.address, expires
        )
        reply = await node.port.call(target, AddProvider(node.dht.info, record), 30)
        assert isinstance(reply, Stored)
        counts["own_accepted" if reply.accepted else "own_refused"] += 1
    return counts


def test_provider_floods_are_refused_or_capped(
    tmp_path: Path, daemons: list[Daemon], members: list[Member]
) -> None:
    net = Network(tmp_path / "net", HONEST + 1, SETTINGS)
    daemons.extend(net.nodes[:HONEST])
    for index in range(HONEST):
        net.start(index)
    member = Member(DataDir(net.nodes[HONEST].data_dir), flood_providers)
    members.append(member)
    counts = member.start(timeout=900)
    assert counts["forged_accepted"] == 0
    assert counts["own_accepted"] <= CAP and counts["own_refused"] >= 100
    for node in net.nodes[:HONEST]:
        node.drain()
    refusals = [
        e
        for node in net.nodes[:HONEST]
        for e in node.events
        if e["event"] == "provider record refused"
    ]
    # Once per reason (forged, over the cap), however often the member repeated it.
    assert 2 <= len(refusals) <= 3, refusals

    source = tmp_path / "scan.bin"  # honest announcements still fit everywhere
    source.write_bytes(os.urandom(2**20))
    for writer in range(HONEST):
        record_id = net.cli(writer, "put", str(source))["record_id"]
        out = tmp_path / f"{record_id}.out"
        net.cli(writer, "get", record_id, "-o", str(out))
        assert out.read_bytes() == source.read_bytes()
