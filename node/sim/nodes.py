"""Whole nodes (the daemon's own assembly) on the seeded simulated network.

The research benchmarks run many complete nodes (DHT, gossip, ledger, shard
service, repair loop) in one trio process under a virtual clock, with
in-memory stores. Only the transport is simulated (see `node/sim/network.py`);
put, get, placement and repair are the code the daemon runs. Each member
stands at a physical `site` (what a failure model takes down); whether its
node is told that site is the `site_aware` switch, so the same network can
compare site-aware placement with placement that ignores sites.

All randomness (identities, record keys, gossip choices) comes from one
seeded RNG, and heavy steps run inline (`node.offload.inline_work`), so a
seed reproduces a run.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nacl.signing
import trio

from node.assembly import Node, NodeParts
from node.config.settings import NodeConfig
from node.net.errors import RpcError
from node.records.errors import RecordError
from node.records.fetch import TooFewShards
from node.sim.memory import MemoryNetwork
from node.sim.network import SimNetwork, SimPort
from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound
from storage.codec.crypt import open_sealed_key
from storage.codec.manifest import RecordMetadata
from storage.store.holdings import Holdings
from storage.store.memory import MemoryShardStore


@dataclass
class Member:
    index: int
    site: str
    node: Node
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    alive: bool = True  # False once failed for good (its data is gone)
    connected: bool = True  # False while cut off (it keeps its data)

    @property
    def up(self) -> bool:
        return self.alive and self.connected

    @property
    def address(self) -> str:
        return self.node.contact.address


@dataclass(frozen=True)
class StoredRecord:
    record_id: bytes
    data: bytes
    k: int
    n: int


class SimNodes:
    def __init__(
        self,
        network: SimNetwork,
        config: NodeConfig,
        rng: random.Random,
        *,
        site_aware: bool = True,
    ) -> None:
        self.network = network
        self.config = config
        self.rng = rng
        self.site_aware = site_aware
        self.members: list[Member] = []
        # A reader key granted every record, so any node can read any record.
        self.reader = nacl.signing.SigningKey(rng.randbytes(32))
        self._unused = MemoryNetwork()

    # -- membership -----------------------------------------------------------------

    async def add(self, nursery: trio.Nursery, site: str) -> Member:
        """Start a new, empty node at `site`, joining through a random live node."""
        index = len(self.members)
        identity = nacl.signing.SigningKey(self.rng.randbytes(32))
        public = bytes(identity.verify_key)
        storage = dataclasses.replace(self.config.storage, site=site if self.site_aware else "")
        network = dataclasses.replace(self.config.network, listen=f"sim-{index}:1")
        config = dataclasses.replace(self.config, network=network, storage=storage)
        node_rng = random.Random(self.rng.getrandbits(64))
        node = Node(
            NodeParts(
                identity=identity,
                network_key=bytes(32),
                config=config,
                transport=self._unused.transport(config.listen),
                store=MemoryShardStore(),
                holdings=Holdings(Path(":memory:")),
                ledger_db=None,
                random_bytes=node_rng.randbytes,
                wall_clock=trio.current_time,
                rng=node_rng,
                port=SimPort(self.network, config.listen, public),
            )
        )
        self.network.attach(config.listen, public, node.dispatcher)
        live = self.live()
        bootstrap = [self.rng.choice(live).node.contact] if live else []
        member = Member(index, site, node)

        async def run(*, task_status: trio.TaskStatus[Node]) -> None:
            with member.scope:
                await node.serve(bootstrap, task_status=task_status)

        await nursery.start(run)
        self.members.append(member)
        return member

    def live(self) -> list[Member]:
        return [m for m in self.members if m.up]

    def fail(self, member: Member) -> None:
        """Lose a node for good: unreachable at once, its tasks and data gone."""
        member.alive = False
        self.network.crash(member.address)
        member.scope.cancel()

    def disconnect(self, member: Member) -> None:
        """Cut a node off (power, network); it keeps its data and comes back."""
        member.connected = False
        self.network.crash(member.address)

    def reconnect(self, member: Member) -> None:
        member.connected = True
        if member.alive:
            self.network.revive(member.address)

    # -- records --------------------------------------------------------------------

    async def put(self, writer: Member, data: bytes) -> StoredRecord:
        """Store `data` from `writer`, granted to the shared reader key."""
        storage = writer.node.parts.config.storage
        result = await writer.node.records.put(
            segments(data, storage.segment_size),
            metadata=RecordMetadata(),
            grantees=[bytes(self.reader.verify_key)],
        )
        return StoredRecord(result.record_id, data, storage.k, storage.n)

    async def known_everywhere(self, records: Sequence[StoredRecord]) -> None:
        """Return once every live node's ledger holds every record's grants,
        and every holder's provider announcements have gone out."""
        reader = bytes(self.reader.verify_key)
        for member in self.live():
            await member.node.announcements_done()
            ledger = member.node.ledger
            for record in records:
                while ledger.state().grant_for(record.record_id, reader, 0) is None:
                    await ledger.changed()

    def health(self, record: StoredRecord) -> RecordHealth:
        """Ground truth: what the live, connected nodes hold of the record."""
        answers = []
        for member in self.live():
            complete, _ = member.node.shards.holdings.indices(record.record_id)
            if complete:
                answers.append((member.node.public_key, HoldingsFound(tuple(complete), (), ())))
        return RecordHealth.of(record.record_id, record.k, record.n, answers)

    def holders(self, record: StoredRecord) -> list[Member]:
        """Alive members (connected or not) holding any complete index of the record."""
        return [
            m
            for m in self.members
            if m.alive and m.node.shards.holdings.indices(record.record_id)[0]
        ]

    async def read(self, member: Member, record: StoredRecord, limit: float) -> bool:
        """Read the record through `member`'s node as the reader would: intact in time?"""
        node = member.node
        with trio.move_on_after(limit):
            try:
                permits = [node.records.permit_as(record.record_id, self.reader)]
                handle = await node.records.open(
                    record.record_id, bytes(self.reader.verify_key), permits
                )
                key = open_sealed_key(handle.grant.sealed_key, self.reader)
                chunks = [chunk async for chunk in node.records.plaintext(handle, key)]
            except (RecordError, RpcError, TooFewShards):
                return False
            return b"".join(chunks) == record.data
        return False


async def segments(data: bytes, size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """`data` as a put's segments: every one `size` bytes but the last."""
    pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    for number, piece in enumerate(pieces):
        yield piece, number == len(pieces) - 1
