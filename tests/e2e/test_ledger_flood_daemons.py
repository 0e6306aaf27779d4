"""A compromised member floods the ledger on real daemons: 5,000 signed, well-formed
record entries of its own feed within a minute, pushed to every daemon. Each daemon
keeps at most the per-author rate (2,000 a minute), refuses the rest without storing or
gossiping it, logs the offence once, and honest puts and gets go on."""

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
from protocol.ledger.entries import RecordBody, derive_record_id, sign_entry
from protocol.ledger.feeds import RATE_LIMITS
from protocol.ledger.messages import PushAck, PushEntries
from tests.e2e.member import Member

pytestmark = pytest.mark.slow

HONEST = 4
FLOOD = 5000
PER_MINUTE = RATE_LIMITS[0][1]
BATCH = 200  # within a push's budget (gossip.budget, 256)
SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 2, "n": 4, "happy": 4, "repair_interval": 3600},
    "gossip": {"interval": 0.5},
}


def flood_entries(signer: nacl.signing.SigningKey, count: int) -> list[bytes]:
    """Its own feed, chained and signed as any node would, all within one minute."""
    author = bytes(signer.verify_key)
    now = int(time.time() * 1000)
    raws, prev = [], b""
    for seq in range(1, count + 1):
        nonce = os.urandom(16)
        body = RecordBody(
            derive_record_id(author, nonce), nonce, os.urandom(32), 1000, 2, 4, author
        )
        entry = sign_entry(signer, seq, prev, now, body)
        raws.append(entry.raw)
        prev = entry.hash
    return raws


async def push_flood(node: Node) -> int:
    """Push the whole flood to every daemon, in order, as many a message as a push takes
    (gossip.budget); how many were accepted in all."""
    raws = flood_entries(node.parts.identity, FLOOD)
    found = await node.dht.find_node(node.dht.contact.node_id)
    accepted = 0
    for contact in found.closest:
        if contact.public_key == node.public_key:
            continue
        for first in range(0, FLOOD, BATCH):
            batch = tuple(raws[first : first + BATCH])
            reply = await node.port.call(contact, PushEntries(batch), 60)
            assert isinstance(reply, PushAck)
            accepted += reply.accepted
    return accepted


def test_a_ledger_flood_is_cut_at_the_per_author_rate(
    tmp_path: Path, daemons: list[Daemon], members: list[Member]
) -> None:
    net = Network(tmp_path / "net", HONEST + 1, SETTINGS)
    daemons.extend(net.nodes[:HONEST])
    for index in range(HONEST):
        net.start(index)
    source = tmp_path / "scan.bin"
    source.write_bytes(os.urandom(2**20))
    first = net.cli(0, "put", str(source))["record_id"]
    before = [net.status(i).ledger_entries for i in range(HONEST)]

    member = Member(DataDir(net.nodes[HONEST].data_dir), push_flood)
    members.append(member)
    accepted = member.start(timeout=600)
    assert accepted <= HONEST * PER_MINUTE
    for index in range(HONEST):
        net.nodes[index].wait_for("ledger entries refused", timeout=60)
    after = [net.status(i).ledger_entries for i in range(HONEST)]
    for index in range(HONEST):
        assert after[index] - before[index] <= PER_MINUTE

    second = net.cli(1, "put", str(source))["record_id"]  # honest work goes on
    for record_id, reader in ((first, 0), (second, 1)):
        out = tmp_path / f"{record_id}.out"
        net.cli(reader, "get", record_id, "-o", str(out))
        assert out.read_bytes() == source.read_bytes()
    for index in range(HONEST):
        net.nodes[index].drain()
        refused = [e for e in net.nodes[index].events if e["event"] == "ledger entries refused"]
        assert len(refused) <= 2  # once per reason (over the rate, chained after a refused one)
