"""A cluster of simulated DHT nodes: start, crash, restart, and ground truth.

Used by the simulation tests and the lookup benchmark. All randomness (keys,
join order, crash choices) comes from one seeded RNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.signing
import trio

from node.config.dht import DhtConfig
from node.dht.service import DhtService
from node.net.dispatch import base_dispatcher
from node.sim.network import SimNetwork, SimPort
from protocol.dht.contact import Contact, distance


@dataclass
class SimNode:
    index: int
    identity: nacl.signing.SigningKey
    address: str
    dht: DhtService
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    saved_table: list[tuple[bytes, str]] = field(default_factory=list)
    up: bool = True

    @property
    def contact(self) -> Contact:
        return self.dht.contact


class SimCluster:
    def __init__(
        self,
        network: SimNetwork,
        config: DhtConfig,
        rng: random.Random,
        make_dht: Callable[..., DhtService] = DhtService,
    ) -> None:
        self.network = network
        self.config = config
        self.rng = rng
        self.make_dht = make_dht
        self.nodes: list[SimNode] = []
        self._nursery: trio.Nursery | None = None

    def _service(self, identity: nacl.signing.SigningKey, address: str) -> DhtService:
        public = bytes(identity.verify_key)
        dht = self.make_dht(
            identity=identity,
            address=address,
            port=SimPort(self.network, address, public),
            random_bytes=self.rng.randbytes,
            wall_clock=trio.current_time,
            config=self.config,
        )
        dispatcher = base_dispatcher()
        dht.install(dispatcher)
        self.network.attach(address, public, dispatcher)
        return dht

    def new_identity(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.rng.randbytes(32))

    def add(self, identity: nacl.signing.SigningKey | None = None) -> SimNode:
        """A new node (attached to the network at once: it listens from now on)."""
        index = len(self.nodes)
        identity = identity or self.new_identity()
        address = f"sim-{index}:1"
        node = SimNode(index, identity, address, self._service(identity, address))
        self.nodes.append(node)
        return node

    async def _run(
        self, node: SimNode, bootstrap: list[Contact], *, task_status: trio.TaskStatus[None]
    ) -> None:
        with node.scope:
            await node.dht.serve(bootstrap, task_status=task_status)

    async def start_node(
        self, nursery: trio.Nursery, node: SimNode, bootstrap: list[Contact]
    ) -> None:
        self._nursery = nursery
        node.scope = trio.CancelScope()
        await nursery.start(self._run, node, bootstrap)

    async def grow(self, nursery: trio.Nursery, size: int, parallel: int = 8) -> None:
        """Add nodes until there are `size`, each joining through a random earlier node."""
        if not self.nodes:
            await self.start_node(nursery, self.add(), [])
        while len(self.nodes) < size:
            batch = [self.add() for _ in range(min(parallel, size - len(self.nodes)))]
            async with trio.open_nursery() as joining:
                for node in batch:
                    earlier = self.rng.choice(self.live()[: node.index] or self.live())
                    joining.start_soon(self.start_node, nursery, node, [earlier.contact])

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.up]

    def crash(self, node: SimNode) -> None:
        """Stop a node at once; its routing table survives as a recent save."""
        node.saved_table = node.dht.routing.snapshot()
        node.up = False
        self.network.crash(node.address)
        node.scope.cancel()

    async def restart(self, nursery: trio.Nursery, node: SimNode, bootstrap: list[Contact]) -> None:
        """Bring a crashed node back with an empty memory but its saved table."""
        node.dht = self._service(node.identity, node.address)
        node.dht.routing.restore(node.saved_table, trio.current_time())
        node.up = True
        await self.start_node(nursery, node, bootstrap)

    def knows_its_neighbours(self, node: SimNode) -> bool:
        """Whether the node's table holds the k live nodes closest to it (all, if fewer)."""
        table = {c.public_key for c in node.dht.routing.contacts()}
        wanted = self.true_closest(node.contact.node_id, self.config.k, exclude=node)
        return all(c.public_key in table for c in wanted)

    def complete(self) -> float:
        """The share of live nodes that know their neighbourhood."""
        live = self.live()
        return sum(self.knows_its_neighbours(n) for n in live) / len(live) if live else 1.0

    async def until_complete(self, limit: float, every: float = 0.25) -> float | None:
        """Virtual seconds until every live node knows its k closest (None: not in `limit`)."""
        started = trio.current_time()
        with trio.move_on_after(limit):
            while self.complete() < 1.0:  # noqa: ASYNC110 - a look every `every` virtual s
                await trio.sleep(every)
            return trio.current_time() - started
        return None

    async def start_together(
        self, nursery: trio.Nursery, size: int, bootstrap_delay: float
    ) -> SimNode:
        """`size - 1` nodes start at once, all bootstrapping from a node that starts last,
        `bootstrap_delay` seconds later (nobody listens at its address until then)."""
        first = self.new_identity()
        pending = Contact(bytes(first.verify_key), f"sim-{len(self.nodes) + size - 1}:1")
        others = [self.add() for _ in range(size - 1)]
        async with trio.open_nursery() as starting:
            for node in others:
                starting.start_soon(self.start_node, nursery, node, [pending])
        await trio.sleep(bootstrap_delay)
        bootstrap = self.add(first)
        assert bootstrap.contact == pending
        await self.start_node(nursery, bootstrap, [])
        return bootstrap

    def true_closest(self, target: bytes, k: int, exclude: SimNode | None = None) -> list[Contact]:
        """The k live nodes closest to `target` (without `exclude`, e.g. the asking node)."""
        live = [n.contact for n in self.live() if n is not exclude]
        return sorted(live, key=lambda c: distance(c.node_id, target))[:k]
