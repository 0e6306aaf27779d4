"""Floods by a compromised member (an in-process certified node, tests/e2e/member.py)
against real daemons are bounded: shards of records it never writes to the ledger are
capped per writer and gone after the short grace, maximum-size messages are decoded off
the daemons' event loops, and meanwhile honest puts and gets go on."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from node.assembly import Node
from node.config.datadir import DataDir
from node.net.errors import RemoteError, RpcError
from node.sim.localnet import Daemon, Network
from protocol.dht.contact import Contact
from protocol.ledger.entries import derive_record_id
from protocol.ledger.messages import FeedHead, LedgerHeadsReply
from protocol.records.messages import ShardsStored, StoreShards
from tests.e2e.member import Member

pytestmark = pytest.mark.slow

HONEST = 5
CAP = 2 * 1024 * 1024
SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {
        "k": 3,
        "n": 5,
        "happy": 5,
        "repair_interval": 1,
        "unrecorded_grace": 60,
        "pending_bytes_per_writer": CAP,
    },
    "gossip": {"interval": 0.5},
}
BLOCK = 64 * 1024


async def contacts_of(node: Node) -> list[Contact]:
    found = await node.dht.find_node(node.dht.contact.node_id)
    return [c for c in found.closest if c.public_key != node.public_key]


async def flood_unrecorded(node: Node) -> dict[str, int]:
    """Send every daemon 4 MiB of blocks of records that never reach the ledger."""
    stored = refused = 0
    for contact in await contacts_of(node):
        for _ in range(8):  # eight records of eight blocks: 4 MiB per daemon
            nonce = os.urandom(16)  # records of its own (only an owner uploads)
            record_id = derive_record_id(node.public_key, nonce)
            blocks = tuple(os.urandom(BLOCK) for _ in range(8))
            try:
                reply = await node.port.call(
                    contact, StoreShards(record_id, None, 0, 0, blocks, False, nonce), 30.0
                )
            except RemoteError as exc:
                assert exc.code == "unavailable" and "cap" in str(exc)
                refused += 1
                continue
            assert isinstance(reply, ShardsStored)
            stored += 1
    return {"stored": stored, "refused": refused}


async def flood_big_messages(node: Node, rounds: int) -> int:
    """Maximum-size messages of capped lists to every daemon, two at a time each."""
    heads = LedgerHeadsReply((FeedHead(b"a" * 32, 1, 1, b"t" * 16),) * 40_000)
    sent = 0

    async def send(contact: Contact) -> None:
        nonlocal sent
        for _ in range(rounds):
            with contextlib.suppress(RpcError):  # it is no request: decoding was the cost
                await node.port.call(contact, heads, 60.0)
            sent += 1

    async with trio.open_nursery() as nursery:
        for contact in await contacts_of(node):
            nursery.start_soon(send, contact)
            nursery.start_soon(send, contact)
    return sent


def test_unrecorded_shards_and_huge_messages_are_bounded(
    tmp_path: Path, daemons: list[Daemon], members: list[Member]
) -> None:
    net = Network(tmp_path / "net", HONEST + 1, SETTINGS)
    daemons.extend(net.nodes[:HONEST])
    for index in range(HONEST):
        net.start(index)
    flooder = DataDir(net.nodes[HONEST].data_dir)

    member = Member(flooder, flood_unrecorded)
    members.append(member)
    counts = member.start()
    assert counts["refused"] >= HONEST * 3  # about 2 MiB taken per daemon, the rest refused
    assert counts["stored"] <= HONEST * 5
    for index in range(HONEST):
        net.nodes[index].wait_for("pending shard bytes capped", timeout=30)

    source = tmp_path / "scan.bin"  # an honest put and get meanwhile
    source.write_bytes(os.urandom(2 * 2**20))  # 0.7 MiB per holder: within its own cap
    record_id = net.cli(0, "put", str(source))["record_id"]
    out = tmp_path / "back.bin"
    net.cli(0, "get", record_id, "-o", str(out))
    assert out.read_bytes() == source.read_bytes()

    for index in range(HONEST):  # the member's shards go after the short grace
        net.nodes[index].wait_for("orphans collected", timeout=180)
    for index in range(HONEST):
        refusals = [
            e for e in net.nodes[index].events if e["event"] == "pending shard bytes capped"
        ]
        assert len(refusals) == 1  # the offence logged once, however often repeated
    member.stop()

    big = Member(flooder, lambda node: flood_big_messages(node, rounds=5))
    members.append(big)
    # Honest work goes on while the daemons decode 4 MiB messages.
    thread_result: list[int] = []
    big_thread = threading.Thread(target=lambda: thread_result.append(big.start(600)))
    big_thread.start()
    for _ in range(3):
        net.cli(0, "get", record_id, "-o", str(out))
        assert out.read_bytes() == source.read_bytes()
    big_thread.join(timeout=600)
    assert thread_result == [HONEST * 2 * 5]
    for index in range(HONEST):
        assert net.nodes[index].running
