"""Whole nodes (the daemon's own assembly) over the in-memory transport, for tests."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec

import nacl.signing
import trio

from node.assembly import Node, NodeParts
from node.config.dht import DhtConfig
from node.config.gossip import GossipConfig
from node.config.settings import NodeConfig
from node.config.storage import StorageConfig
from node.net.membership import Membership
from node.sim.memory import MemoryNetwork
from protocol.membership.certificate import issue
from storage.store.holdings import Holdings
from storage.store.memory import MemoryShardStore
from tests.protocol.keys import NETWORK, seed

P = ParamSpec("P")


def small_config(**storage: object) -> NodeConfig:
    settings = {
        "k": 3,
        "n": 5,
        "happy": 4,
        "segment_size": 64 * 1024,
        "call_timeout": 5.0,
        **storage,
    }
    return NodeConfig(
        dht=DhtConfig(k=8, query_timeout=1.0),
        gossip=GossipConfig(interval=0.2),
        storage=StorageConfig(**settings),  # type: ignore[arg-type]
    )


@dataclass
class Cluster:
    root: Path
    network: MemoryNetwork = field(default_factory=MemoryNetwork)
    nodes: list[Node] = field(default_factory=list)
    scopes: list[trio.CancelScope] = field(default_factory=list)

    async def add(
        self,
        nursery: trio.Nursery,
        config: NodeConfig,
        site: str = "",
        authority: nacl.signing.SigningKey | None = None,
    ) -> Node:
        """A node of the cluster; with `authority`, certified at `site` by it (and
        trusting only it)."""
        index = len(self.nodes)
        identity = nacl.signing.SigningKey(seed(f"cluster node {index}"))
        membership = None
        if authority is not None:
            public = bytes(identity.verify_key)
            membership = Membership(
                own=issue(authority, public, site or f"node-{index}", issued_at=0),
                authorities={bytes(authority.verify_key)},
                clock_ms=lambda: int(time.time() * 1000),
            )
        config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, site=site))
        parts = NodeParts(
            identity=identity,
            network_key=NETWORK,
            config=config,
            transport=self.network.transport(f"mem-{index}:1"),
            store=MemoryShardStore(config.storage.quota_bytes or None),
            holdings=Holdings(self.root / f"holdings-{index}.sqlite"),
            ledger_db=None,
            random_bytes=os.urandom,
            wall_clock=time.time,
            rng=random.Random(index),
            membership=membership,
        )
        node = Node(parts)
        bootstrap = [self.nodes[0].contact] if self.nodes else []
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[Node]) -> None:
            with scope:
                await node.serve(bootstrap, task_status=task_status)

        await nursery.start(run)
        self.nodes.append(node)
        self.scopes.append(scope)
        return node

    async def add_many(self, nursery: trio.Nursery, count: int, config: NodeConfig) -> None:
        for _ in range(count):
            await self.add(nursery, config)

    def crash(self, node: Node) -> None:
        """Stop a node at once (its memory-transport address stops answering)."""
        self.scopes[self.nodes.index(node)].cancel()


def holders_of(cluster: Cluster, record_id: bytes) -> list[Node]:
    """The cluster's nodes holding a complete shard index of the record."""
    return [n for n in cluster.nodes if n.shards.holdings.indices(record_id)[0]]


async def read_all(node: Node, record_id: bytes) -> bytes:
    handle = await node.records.open(record_id)
    key = node.records.record_key(handle)
    return b"".join([chunk async for chunk in node.records.plaintext(handle, key)])


async def knows_grant(node: Node, record_id: bytes, grantee: bytes) -> None:
    """Return once `node`'s ledger shows a grant of the record to `grantee`."""
    while node.ledger.state().grant_for(record_id, grantee, node.clock_ms()) is None:
        await node.ledger.changed()


def harm_first_block(node: Node, harm: str) -> None:
    """Rot ("rot": overwrite its start) or lose ("loss") the first block `node` holds."""
    store = node.parts.store
    assert isinstance(store, MemoryShardStore)
    digest = store.digests()[0]
    if harm == "rot":
        store.damage(digest, b"\x00" * 10)
    else:
        store.delete(digest)
