"""One whole node: every service wired to one dispatcher and one RPC port.

The daemon builds a Node from its data directory (TCP, disk stores); tests
build the same Node over the in-memory transport and temporary directories,
so they exercise exactly the daemon's wiring. `serve` starts the services in
dependency order with `nursery.start`: listener, DHT (join), gossip, shard
announcements, then the record upkeep (repair and tombstones).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import trio

from node.config.settings import NodeConfig
from node.dht.service import DhtService
from node.emergency.asking import EmergencyAsker
from node.emergency.service import EmergencyService, opener
from node.ledger.gossip import GossipService
from node.ledger.service import LedgerService
from node.logs import event, get_logger
from node.metrics.registry import NodeMetrics
from node.net.connections import ConnectionManager
from node.net.dispatch import base_dispatcher
from node.net.membership import Membership
from node.net.revocations import RevocationService
from node.net.rpc_port import ManagerPort, RpcPort, SelfRoutingPort
from node.net.transport import Transport
from node.records.held import HeldServer
from node.records.repair import Repairer
from node.records.service import RecordService
from node.records.shard_service import ShardService
from node.records.upkeep import RecordUpkeep
from node.records.views import RecordViews
from node.records.witness import GRACE as WITNESS_GRACE
from node.records.witness import AccessWitness
from protocol.dht.contact import Contact
from protocol.ids import node_id
from protocol.ledger.entries import RecordBody
from protocol.ledger.intake import IntakeBudget
from storage.store.holdings import Holdings
from storage.store.ledger_db import LedgerDB
from storage.store.shard_store import ShardStore

# A view of a record older than this that says "healthy" is surveyed again when a
# repair read asks (a repairer's survey may be newer than this holder's last pass).
# Short enough that a reader's retries (after 1, 2, 4 and 8 s) find the new view;
# only a holder of an index of the record can ask, and one survey a record at a time.
VIEW_STALE_AFTER = 5.0
# A view that shows a need opens repair reads this long: a long repair's reads find
# it, while a survey that once missed a holder's answer does not open the record for
# a whole repair interval.
NEED_FRESH = 60.0

log = get_logger("node")


@dataclass
class NodeParts:
    identity: nacl.signing.SigningKey
    network_key: bytes
    config: NodeConfig
    transport: Transport
    store: ShardStore
    holdings: Holdings
    ledger_db: LedgerDB | None
    random_bytes: Callable[[int], bytes]
    wall_clock: Callable[[], float]
    rng: random.Random
    # An in-process network's port (simulations). None: the connection manager
    # over `transport` (secret handshake, box stream), as the daemon runs.
    port: RpcPort | None = None
    # Write this node's own ledger entries only once peers confirmed its feed
    # (the daemon: a restored ledger must not fork it). Tests start fresh.
    confirm_own_feed: bool = False
    # This node's certificate and the network's authorities; None: an open network.
    membership: Membership | None = None
    # Where revocations this node learns are kept (None: in memory only), and the
    # lines of that file not applied at start (written back with every change).
    revocations_file: Path | None = None
    revocations_aside: tuple[str, ...] = ()
    access_grace: float = WITNESS_GRACE  # seconds a holder waits before witnessing a read


class Node:
    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts
        config = parts.config
        public = bytes(parts.identity.verify_key)
        self.public_key = public
        self.metrics = NodeMetrics()  # this node's own registry (docs/monitoring.md)
        self.dispatcher = base_dispatcher()
        self.manager = ConnectionManager(
            identity=parts.identity,
            network_key=parts.network_key,
            transport=parts.transport,
            handler=self.dispatcher,
            limits=config.limits,
            random_bytes=parts.random_bytes,
            rng=parts.rng.random,
            membership=parts.membership,
        )
        outbound = parts.port or ManagerPort(self.manager)
        self.port = SelfRoutingPort(outbound, public, self.dispatcher)
        self.dht = DhtService(
            identity=parts.identity,
            address=config.listen,
            port=self.port,
            random_bytes=parts.random_bytes,
            wall_clock=parts.wall_clock,
            config=config.dht,
        )
        self.manager.on_inbound = lambda peer: self.dht.greet(peer, peer.call)
        self.ledger = LedgerService(
            identity=parts.identity,
            clock_ms=self.clock_ms,
            db=parts.ledger_db,
            confirm_own_feed=parts.confirm_own_feed,
            intake=IntakeBudget(config.gossip.intake_rate, config.gossip.intake_burst),
        )
        self.gossip = GossipService(
            ledger=self.ledger,
            port=self.port,
            me=lambda: self.dht.info,
            peers=self.dht.routing.contacts,
            rng=parts.rng,
            config=config.gossip,
            heard=self.dht.observe,
        )
        # What this node's own surveys last found of each held record: the read gate
        # serves repair reads only while a record needs repair (node/records/views.py).
        self.views = RecordViews(
            holds=lambda record_id: bool(parts.holdings.indices(record_id)[0]),
            clock=trio.current_time,
            stale_after=min(VIEW_STALE_AFTER, config.storage.repair_interval),
            need_fresh=min(NEED_FRESH, config.storage.repair_interval),
        )
        # Every read reaches the ledger: this node's own, and those it served (witnessed).
        self.witness = AccessWitness(ledger=self.ledger, grace=parts.access_grace)
        self.shards = ShardService(
            witness=self.witness.served,
            views=self.views,
            site_of=parts.membership.site_of if parts.membership is not None else _no_site,
            store=parts.store,
            holdings=parts.holdings,
            site=_own_site(parts),
            announce=self._announce,
            withdraw=self.dht.stop_providing,
            clock_ms=self.clock_ms,
            recorded=lambda record_id: record_id in self.ledger.state().records,
            pending_cap=config.storage.pending_bytes_per_writer,
            ledger_state=self.ledger.state,
            own_key=public,
        )
        self.ledger.subscribe(
            lambda entries: self.shards.now_recorded(
                e.body.record_id for e in entries if isinstance(e.body, RecordBody)
            )
        )
        self.records = RecordService(
            identity=parts.identity,
            dht=self.dht,
            ledger=self.ledger,
            shards=self.shards,
            port=self.port,
            config=config.storage,
            random_bytes=parts.random_bytes,
            clock_ms=self.clock_ms,
            metrics=self.metrics.records,
        )
        self.records.log_read = self.witness.reading
        if parts.membership is not None:
            self.records.reach.certified_site = parts.membership.site_of
        self.repairer = Repairer(self.records, self.views)
        self.upkeep = RecordUpkeep(
            repairer=self.repairer,
            shards=self.shards,
            ledger=self.ledger,
            interval=config.storage.repair_interval,
            orphan_grace=config.storage.orphan_grace,
            unrecorded_grace=config.storage.unrecorded_grace,
            scrub_bytes=config.storage.scrub_bytes,
            audit_bytes=config.storage.audit_bytes,
            deadline=config.storage.repair_deadline,
        )
        # Break-glass: the owner's policy and the requester's asks (docs/emergency.md).
        self.emergency = EmergencyService(
            identity_key=opener(parts.identity),
            public_key=public,
            ledger=self.ledger,
            config=config.emergency,
            site_of=parts.membership.site_of if parts.membership is not None else _no_site,
            clock_ms=self.clock_ms,
            random_bytes=parts.random_bytes,
        )
        self.emergency_asker = EmergencyAsker(
            dht=self.dht, port=self.port, ledger=self.ledger, timeout=config.storage.call_timeout
        )
        for service in (self.dht, self.gossip, self.shards, self.emergency):
            service.install(self.dispatcher)
        HeldServer(self.shards).install(self.dispatcher)  # a small record's get in one round
        self.revocations: RevocationService | None = None
        if parts.membership is not None:
            self.revocations = RevocationService(
                membership=parts.membership,
                manager=self.manager,
                path=parts.revocations_file,
                aside=list(parts.revocations_aside),
                on_revoked=self._forget_member,
            )
            self.revocations.install(self.dispatcher)
            self.manager.on_connect = self.revocations.greet
        self.metrics.watch(self)
        self._nursery: trio.Nursery | None = None
        self._announcing = 0  # provider announcements started and not yet finished
        self._announced = trio.Event()  # set and replaced when the count drops to 0

    def clock_ms(self) -> int:
        return int(self.parts.wall_clock() * 1000)

    @property
    def contact(self) -> Contact:
        return self.dht.contact

    def _forget_member(self, public_key: bytes) -> None:
        """A revoked node: not a contact, not a provider, not a placement candidate."""
        self.dht.forget(public_key)
        self.records.reach.forget(public_key)

    def _announce(self, key: bytes) -> None:
        if self._nursery is not None:
            self._announcing += 1
            self._nursery.start_soon(self._provide, key)

    async def _provide(self, key: bytes) -> None:
        try:
            await self.dht.provide(key)
        except Exception:  # an announcement is retried by republish; never fatal
            log.exception("provider announcement failed")
        finally:
            self._announcing -= 1
            if self._announcing == 0:
                self._announced.set()
                self._announced = trio.Event()

    async def announcements_done(self) -> None:
        """Return once every provider announcement started so far has finished."""
        while self._announcing:
            await self._announced.wait()

    async def serve(
        self,
        bootstrap: Sequence[Contact],
        restored: Sequence[tuple[bytes, str]] = (),
        *,
        task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every service until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.witness.serve)
            if self.revocations is not None:
                await nursery.start(self.revocations.serve)
            if self.parts.port is None:
                bound = await nursery.start(self.manager.serve)
                self.dht.set_address(self.parts.config.advertised(bound))
            self.dht.routing.restore(restored, trio.current_time())
            await nursery.start(self.dht.serve, bootstrap)
            await nursery.start(self.gossip.serve)
            self.shards.rebuild_pending()
            await self.shards.sweep_unnoted()  # left by a crash between a store and its note
            await nursery.start(self.shards.spares.serve)
            held = self.shards.announce_all()
            await nursery.start(self.upkeep.serve)
            event(
                log,
                logging.INFO,
                "node ready",
                address=self.dht.contact.address,
                records_held=held,
                ledger_entries=len(self.ledger.book),
            )
            task_status.started(self)


def _no_site(public_key: bytes) -> str | None:
    return None


def _own_site(parts: NodeParts) -> str:
    """A certified node's site is its certificate's; else the configured one, else its id."""
    if parts.membership is not None:
        return parts.membership.own.site
    return parts.config.storage.site or node_id(bytes(parts.identity.verify_key)).hex()[:16]
