"""A cluster of simulated ledger nodes gossiping over SimNetwork.

Used by the gossip simulation tests and benchmark: whole LedgerService +
GossipService nodes (no disk), full membership, and a record of when each
entry reached each node. All randomness comes from one seeded RNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.signing
import trio

from node.config.gossip import GossipConfig
from node.ledger.gossip import GossipService
from node.ledger.service import LedgerService
from node.net.dispatch import base_dispatcher
from node.sim.network import SimNetwork, SimPort
from protocol.dht.contact import Contact
from protocol.ledger.entries import Entry


@dataclass
class GossipNode:
    index: int
    identity: nacl.signing.SigningKey
    contact: Contact
    ledger: LedgerService
    gossip: GossipService
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    arrivals: dict[bytes, float] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.contact.address


class GossipCluster:
    def __init__(self, network: SimNetwork, config: GossipConfig, rng: random.Random) -> None:
        self.network = network
        self.config = config
        self.rng = rng
        self.nodes: list[GossipNode] = []
        self._arrival = trio.Event()

    def _peers(self, me: Contact) -> list[Contact]:
        return [n.contact for n in self.nodes if n.contact != me]

    def add(self) -> GossipNode:
        index = len(self.nodes)
        identity = nacl.signing.SigningKey(self.rng.randbytes(32))
        contact = Contact(bytes(identity.verify_key), f"ledger-{index}:1")
        ledger = LedgerService(identity=identity, clock_ms=lambda: int(trio.current_time() * 1000))
        gossip = GossipService(
            ledger=ledger,
            port=SimPort(self.network, contact.address, contact.public_key),
            me=contact.info,
            peers=lambda: self._peers(contact),
            rng=self.rng,
            config=self.config,
        )
        node = GossipNode(index, identity, contact, ledger, gossip)

        def arrived(entries: list[Entry]) -> None:
            now = trio.current_time()
            for entry in entries:
                node.arrivals.setdefault(entry.hash, now)
            self._arrival.set()
            self._arrival = trio.Event()

        ledger.subscribe(arrived)
        dispatcher = base_dispatcher()
        node.gossip.install(dispatcher)
        self.network.attach(contact.address, contact.public_key, dispatcher)
        self.nodes.append(node)
        return node

    async def _run(self, node: GossipNode, *, task_status: trio.TaskStatus[None]) -> None:
        with node.scope:
            await node.gossip.serve(task_status=task_status)

    async def start(self, nursery: trio.Nursery, size: int) -> None:
        for _ in range(size):
            node = self.add()
            await nursery.start(self._run, node)

    async def wait_for(self, condition: Callable[[], bool], limit: float) -> float:
        """Wait (woken by every arrival) until `condition()` holds; returns the time taken.

        Raises trio.TooSlowError after `limit` seconds.
        """
        start = trio.current_time()
        with trio.fail_after(limit):
            while not condition():
                await self._arrival.wait()
        return trio.current_time() - start

    def converged(self) -> bool:
        """Every node holds the same entries, hence the same state."""
        return len({len(n.ledger.book) for n in self.nodes}) == 1 and len(self.digests()) == 1

    def coverage(self, entry_hash: bytes) -> float:
        return sum(entry_hash in n.ledger.book for n in self.nodes) / len(self.nodes)

    def digests(self) -> set[bytes]:
        return {n.ledger.state().digest() for n in self.nodes}
