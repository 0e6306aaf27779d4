"""Read after revocation, on real daemons: a grantee revoked before its first read gets
no block of the record (issue 13).

Five daemons on 127.0.0.1 and one adversarial member run in this process from the
project's own modules: a certified node whose key was granted the record and revoked
before it read. It still holds the sealed key (the grant entry stays in every ledger)
and asks every holder as a reader would, without a permit, with a made-up holder
proof, and through a record of its own naming the victim's blocks. It gets no block;
the owner and the patient still read the record; each holder logs the offence once
per reason however often it is repeated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from node.assembly import Node
from node.config.datadir import DataDir
from node.daemon import serve_node
from node.net.errors import PeerClosed, RemoteError
from node.sim.localnet import Daemon, Network, medvault
from protocol.ledger.entries import GrantBody, RevokeBody, derive_record_id
from protocol.net.messages import Message
from protocol.records import permit
from protocol.records.messages import (
    BlockRef,
    BlocksFound,
    FetchBlocks,
    HolderProof,
    StoreShards,
)
from storage.codec.crypt import open_sealed_key

pytestmark = pytest.mark.slow

ATTACKER = 5
ROUNDS = 3  # each offence repeated: the holders log it once


def settings() -> dict[str, dict[str, Any]]:
    return {
        "storage": {"k": 3, "n": 5, "happy": 4, "repair_interval": 600},
        "gossip": {"interval": 0.5},
    }


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll a CLI-observable condition, bounded (processes have no events to await)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def test_a_grantee_revoked_before_its_first_read_gets_no_block(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", ATTACKER + 1, settings())  # the last one runs in here
    daemons.extend(net.nodes[:ATTACKER])
    for index in range(ATTACKER):
        net.start(index)
    for node in net.nodes[:ATTACKER]:
        node.wait_for("joined")
    patient_key = tmp_path / "patient.key"
    patient = medvault("keys", "new", "-o", str(patient_key)).stdout.strip()
    source = tmp_path / "record.bin"
    data = os.urandom(400_000)
    source.write_bytes(data)
    attacker_key = net.keys[ATTACKER]

    served, asked = trio.run(_attack, net, source, patient, attacker_key)

    assert asked and served == 0, f"{served} blocks served to the revoked grantee"
    owner_copy, patient_copy = tmp_path / "owner.bin", tmp_path / "patient.bin"
    rid = _record_id(net)
    net.cli(0, "get", rid, "-o", str(owner_copy))
    net.cli(3, "get", rid, "-o", str(patient_copy), "--as", str(patient_key))
    assert owner_copy.read_bytes() == data == patient_copy.read_bytes()
    logged: Counter[tuple[int, str]] = Counter()
    for index in asked:
        net.nodes[index].drain()
        for seen in net.nodes[index].events:
            if seen["event"] == "read refused" and seen.get("peer") == attacker_key[:16]:
                logged[(index, seen["reason"])] += 1
    assert logged and set(logged.values()) == {1}, logged  # once per holder and reason
    assert {reason for _, reason in logged} == {"no_grant", "forbidden"}


def _record_id(net: Network) -> str:
    (row,) = net.cli(0, "ls")["records"]
    return str(row["record_id"])


async def _attack(
    net: Network, source: Path, patient: str, attacker_key: str
) -> tuple[int, set[int]]:
    """Run the adversarial member; (blocks it was served, holders it asked)."""
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(serve_node, DataDir(net.nodes[ATTACKER].data_dir))
        await trio.to_thread.run_sync(lambda: net.nodes[0].wait_for("joined"))
        put = await trio.to_thread.run_sync(
            lambda: net.cli(0, "put", str(source), "--patient", patient, "--grant", attacker_key)
        )
        rid = str(put["record_id"])
        await trio.to_thread.run_sync(lambda: net.cli(0, "revoke", rid, attacker_key))
        record_id = bytes.fromhex(rid)
        me = node.public_key

        def revoked(index: int) -> bool:
            entries = net.cli(index, "ledger", "--record", rid)["entries"]
            return any(e["type"] == "revoke" for e in entries)

        for index in range(ATTACKER):  # revoked before the first read, everywhere
            reached = functools.partial(revoked, index)
            await trio.to_thread.run_sync(wait_until, "the revoke reaches every node", reached)
        entries = node.ledger.book.entries
        while not any(isinstance(e.body, RevokeBody) for e in entries()):
            await node.ledger.changed()
        (grant,) = [
            e.body for e in entries() if isinstance(e.body, GrantBody) and e.body.grantee == me
        ]
        assert len(open_sealed_key(grant.sealed_key, node.parts.identity)) == 32  # it has the key

        manifest = await node.records.manifest_of(node.records.lookup(record_id))
        holdings = await node.records.holdings_of(record_id)
        served = 0
        asked: set[int] = set()
        for holding in holdings:
            contact = holding.contact
            asked.add(net.index_of(contact.public_key.hex()))
            index = holding.found.complete[0]
            refs = tuple(BlockRef(s, index) for s in range(manifest.segment_count))
            own = permit.sign(
                node.parts.identity, record_id, me, node.clock_ms(), read_id=bytes(16)
            )
            fake_nonce = os.urandom(16)  # a record of its own: it may upload it
            fake_id = derive_record_id(node.public_key, fake_nonce)
            fake = dataclasses.replace(manifest, record_id=fake_id).encode()
            planted = StoreShards(fake_id, fake, index, 0, (), True, fake_nonce)
            tries: list[Message] = [
                FetchBlocks(record_id, refs, own),  # as a reader: no current grant
                FetchBlocks(record_id, refs),  # no permit
                FetchBlocks(record_id, refs, None, HolderProof(index, 0, os.urandom(64))),
            ]
            for _ in range(ROUNDS):
                for message in tries:
                    served += await _blocks(node, contact, message)
            # A record of its own naming the victim's blocks (it is that one's uploader).
            with contextlib.suppress(RemoteError):  # accepted or not: nothing may come of it
                await node.port.call(contact, planted, 10.0)
            mine = permit.sign(node.parts.identity, fake_id, me, node.clock_ms(), read_id=bytes(16))
            served += await _blocks(node, contact, FetchBlocks(fake_id, refs, mine))
        nursery.cancel_scope.cancel()
    return served, asked


async def _blocks(node: Node, contact: Any, message: Message) -> int:
    for attempt in range(3):
        try:
            answer = await node.port.call(contact, message, 10.0)
            break
        except RemoteError:
            return 0
        except PeerClosed:  # a duplicate connection closed by the tie-break: ask again
            if attempt == 2:
                raise
    else:
        raise AssertionError("unreachable")
    assert isinstance(answer, BlocksFound)
    return sum(1 for block in answer.blocks if block is not None)
