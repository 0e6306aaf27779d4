"""Two real nodes (the daemon's own code, TCP on 127.0.0.1) replicate a ledger;
a restarted node keeps its ledger and catches up on what it missed."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from node.assembly import Node
from node.config.datadir import DataDir
from node.daemon import LEDGER_FILE, serve_node
from node.sim.localnet import configure
from protocol.ledger.entries import Entry, GrantBody, RecordBody, derive_record_id
from storage.store.ledger_db import LedgerDB
from tests.protocol.keys import NETWORK


def make_node(root: Path, bootstrap: list[str]) -> DataDir:
    data = DataDir(root)
    data.initialize(
        network_key=NETWORK, listen="127.0.0.1:0", bootstrap=bootstrap, random_bytes=os.urandom
    )
    configure(data.config_path, {"gossip": {"interval": 0.2}})
    return data


async def holds(node: Node, entry: Entry) -> None:
    """Return once `entry` is in `node`'s ledger."""
    arrived = trio.Event()
    node.ledger.subscribe(lambda entries: arrived.set() if entry in entries else None)
    if entry.hash not in node.ledger.book:
        await arrived.wait()


async def test_two_nodes_replicate_and_a_restart_keeps_the_ledger(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            a: Node = await nursery.start(serve_node, make_node(tmp_path / "a", []))
            a_key = a.dht.contact.public_key.hex()
            b_dir = make_node(tmp_path / "b", [f"{a_key}@{a.manager.address}"])
            owner = a.dht.contact.public_key
            nonce = os.urandom(16)
            record_id = derive_record_id(owner, nonce)

            async with trio.open_nursery() as running_b:
                b: Node = await running_b.start(serve_node, b_dir)
                await a.ledger.append(RecordBody(record_id, nonce, os.urandom(32), 10, 4, 8, owner))
                grant = await a.ledger.append(
                    GrantBody(record_id, os.urandom(32), os.urandom(80), 0)
                )
                await holds(b, grant)
                assert b.ledger.state().digest() == a.ledger.state().digest()
                running_b.cancel_scope.cancel()

            with LedgerDB(b_dir.root / LEDGER_FILE) as stored:  # what b kept on disk
                assert stored.entry_count() == 2
            # Written while b is down:
            later = await a.ledger.append(GrantBody(record_id, os.urandom(32), os.urandom(80), 0))
            async with trio.open_nursery() as running_b:
                b = await running_b.start(serve_node, b_dir)
                assert grant.hash in b.ledger.book
                await holds(b, later)  # and caught up through gossip
                assert b.ledger.state().digest() == a.ledger.state().digest()
                running_b.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
