"""`medvault run`: one node in the foreground, stopped cleanly by SIGINT/SIGTERM.

Every service starts with `nursery.start`, so "listening" and "joined" are
logged only when they are true. The DHT's routing table is restored from
peers.json at start (so a node can rejoin without its bootstrap peers),
saved every minute and again on the way out. The ledger lives in
ledger.sqlite and is gossiped with peers from the routing table. Configured
bootstrap peers are also pinged once, as a connectivity check an operator can
read in the log.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from node.config import NodeConfig, PeerAddress
from node.connections import ConnectionManager
from node.datadir import DataDir
from node.dht import DhtService
from node.dispatch import base_dispatcher
from node.gossip import GossipService
from node.ledger import LedgerService
from node.logs import event, get_logger, short_key
from node.peerstore import PEERS_FILE, UnreadablePeers, load_peers, save_peers
from node.rpc_errors import RpcError
from node.rpc_port import ManagerPort
from node.transport import TcpTransport
from protocol.contact import Contact
from protocol.ids import node_id
from protocol.messages import Ping, Pong
from storage.ledger_db import LedgerDB

log = get_logger("daemon")
SAVE_PEERS_EVERY = 60.0


LEDGER_FILE = "ledger.sqlite"


@dataclass
class RunningNode:
    manager: ConnectionManager
    dht: DhtService
    ledger: LedgerService
    gossip: GossipService


async def serve_node(
    data_dir: DataDir, *, task_status: trio.TaskStatus[RunningNode] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the node's services until cancelled."""
    config = data_dir.config()
    identity = data_dir.identity()
    public = bytes(identity.verify_key)
    dispatcher = base_dispatcher()
    manager = ConnectionManager(
        identity=identity,
        network_key=data_dir.network_key(),
        transport=TcpTransport(config.listen),
        handler=dispatcher,
        limits=config.limits,
    )
    dht = DhtService(
        identity=identity,
        address=config.listen,
        port=ManagerPort(manager),
        random_bytes=os.urandom,
        wall_clock=time.time,
        config=config.dht,
    )
    dht.install(dispatcher)
    event(log, logging.INFO, "starting", node_id=node_id(public).hex(), public_key=public.hex())
    peers_path = data_dir.root / PEERS_FILE
    with LedgerDB(data_dir.root / LEDGER_FILE) as db:
        ledger = LedgerService(identity=identity, clock_ms=lambda: int(time.time() * 1000), db=db)
        gossip = GossipService(
            ledger=ledger,
            port=ManagerPort(manager),
            me=lambda: dht.info,
            peers=dht.routing.contacts,
            rng=random.SystemRandom(),
            config=config.gossip,
        )
        gossip.install(dispatcher)
        node = RunningNode(manager, dht, ledger, gossip)
        await _serve(node, config, peers_path, task_status=task_status)


async def _serve(
    node: RunningNode,
    config: NodeConfig,
    peers_path: Path,
    *,
    task_status: trio.TaskStatus[RunningNode],
) -> None:
    manager, dht = node.manager, node.dht
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(manager.serve)
        dht.set_address(config.advertised(bound))
        restored = _restore(dht, peers_path)
        bootstrap = [Contact(p.public_key, p.address) for p in config.bootstrap]
        event(
            log,
            logging.INFO,
            "joining",
            advertise=dht.contact.address,
            restored_contacts=restored,
            bootstrap_peers=len(bootstrap),
        )
        try:
            await nursery.start(dht.serve, bootstrap)
            await nursery.start(node.gossip.serve)
            nursery.start_soon(_save_periodically, dht, peers_path)
            for peer in config.bootstrap:
                nursery.start_soon(_reach, manager, peer)
            task_status.started(node)
            await trio.sleep_forever()
        finally:
            _save(dht, peers_path)  # synchronous: runs even when cancelled


def _restore(dht: DhtService, path: Path) -> int:
    try:
        entries = load_peers(path)
    except UnreadablePeers as exc:
        event(log, logging.WARNING, "peers file ignored", reason=str(exc))
        return 0
    return dht.routing.restore(entries, trio.current_time())


def _save(dht: DhtService, path: Path) -> None:
    try:
        save_peers(path, dht.routing.snapshot())
    except OSError as exc:
        event(log, logging.WARNING, "could not save peers", reason=str(exc))


async def _save_periodically(dht: DhtService, path: Path) -> None:
    while True:
        await trio.sleep(SAVE_PEERS_EVERY)
        _save(dht, path)


async def _reach(manager: ConnectionManager, peer: PeerAddress) -> None:
    """Ping a bootstrap peer until it answers once."""
    delay = manager.limits.backoff_initial
    while True:
        start = trio.current_time()
        try:
            connection = await manager.connect(peer)
            connected = trio.current_time()
            await connection.request(Ping(0), Pong)
        except RpcError as exc:
            event(
                log,
                logging.WARNING,
                "bootstrap peer unreachable",
                peer=short_key(peer.public_key),
                address=peer.address,
                reason=str(exc),
            )
            await trio.sleep(delay)
            delay = min(delay * 2, manager.limits.backoff_max)
            continue
        now = trio.current_time()
        event(
            log,
            logging.INFO,
            "peer reachable",
            peer=short_key(peer.public_key),
            address=peer.address,
            connect_ms=round((connected - start) * 1000, 2),
            ping_ms=round((now - connected) * 1000, 2),
        )
        return


async def run_until_signalled(data_dir: DataDir) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_node, data_dir)
            async for signum in signals:
                event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    event(log, logging.INFO, "stopped")
