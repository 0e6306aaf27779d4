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
from collections.abc import Mapping
from pathlib import Path

import trio

from node.assembly import Node, NodeParts
from node.config.addresses import PeerAddress
from node.config.datadir import AUTHORITY_FILE, DataDir, DataDirError
from node.config.fields import ConfigError
from node.config.settings import NodeConfig
from node.control.address import control_path
from node.control.ops import ControlOps
from node.control.server import ControlServer
from node.dht.peerstore import PEERS_FILE, UnreadablePeers, load_peers, save_peers
from node.dht.service import DhtService
from node.logs import event, get_logger, short_key
from node.memory import limit_arenas
from node.net.connections import ConnectionManager
from node.net.errors import RpcError
from node.net.membership import Membership
from node.net.revocations import (
    REVOCATIONS_FILE,
    Loaded,
    RevocationFileError,
    load_revocations,
)
from node.net.transport import TcpTransport
from protocol.dht.contact import Contact
from protocol.ids import node_id
from protocol.membership.certificate import CertificateError
from protocol.net.messages import Ping, Pong
from storage.codec import erasure
from storage.codec.isal import IsalError
from storage.store.disk import DiskShardStore
from storage.store.holdings import Holdings
from storage.store.ledger_db import LedgerDB, LedgerDBError

log = get_logger("daemon")
SAVE_PEERS_EVERY = 60.0
EXPIRY_WARNING_MS = 30 * 86_400_000  # a certificate this close to its end is warned about
CONTROL_GRACE = 15.0  # seconds requests in flight get to end when the node is stopped


LEDGER_FILE = "ledger.sqlite"
HOLDINGS_FILE = "holdings.sqlite"


def open_membership(data_dir: DataDir, config: NodeConfig, public: bytes) -> Membership | None:
    """This node's certificate checked against the network's authorities (None: an open
    network); DataDirError, naming what to do, when the node may not join."""
    authorities = config.network.authorities
    if not authorities:
        return None
    path = data_dir.certificate_path
    cert = data_dir.certificate()
    if cert is None:
        raise DataDirError(
            f"this network admits only certified nodes and {path} is missing: give an admin"
            " this node's key (`medvault id`), who runs `medvault admit KEY --site SITE`;"
            " then `medvault certificate install FILE`"
        )
    if cert.node_key != public:
        raise DataDirError(f"{path} is the certificate of another key")
    if config.storage.site and config.storage.site != cert.site:
        raise DataDirError(
            f"storage.site is {config.storage.site!r} but the certificate says {cert.site!r}"
            " (a certified node's site is its certificate's: remove storage.site)"
        )
    try:
        return Membership(
            own=cert,
            authorities=authorities,
            clock_ms=lambda: int(time.time() * 1000),
            revoked=config.network.revoked,
        )
    except CertificateError as exc:
        raise DataDirError(f"{path}: {exc}") from None


def open_revocations(data_dir: DataDir, membership: Membership | None) -> Loaded:
    """The revocations this node learned before, applied to `membership` (a file that
    cannot be read stops the node: starting without it would let revoked nodes in)."""
    if membership is None:
        return Loaded(0, [], [])
    try:
        return load_revocations(data_dir.root / REVOCATIONS_FILE, membership)
    except RevocationFileError as exc:
        raise DataDirError(str(exc)) from None


def warn_about_membership(data_dir: DataDir, membership: Membership | None) -> None:
    """The authority key admits anyone: on a running node it is one break-in away. A
    certificate about to expire will soon cut this node off."""
    if membership is not None and membership.own.expires_at:
        left = membership.own.expires_at - int(time.time() * 1000)
        if left < EXPIRY_WARNING_MS:
            event(
                log,
                logging.WARNING,
                "membership certificate expires soon",
                days_left=round(left / 86_400_000, 1),
                advice="ask an admin for another `medvault admit`",
            )
    if (data_dir.root / AUTHORITY_FILE).exists():
        event(
            log,
            logging.WARNING,
            "authority key on this node",
            path=str(data_dir.root / AUTHORITY_FILE),
            advice="move it to an offline machine; `medvault admit --authority-key FILE`",
        )


def choose_erasure_backend(environ: Mapping[str, str]) -> str:
    """Select the Reed-Solomon backend MEDVAULT_RS_BACKEND names (default: ISA-L when it
    loads, numpy otherwise) and describe it; a bad name, or isal forced where it cannot
    load, stops the node saying why."""
    try:
        erasure.backend_from_environment(environ)
    except (ValueError, IsalError) as exc:
        raise ConfigError(str(exc)) from None
    return erasure.describe_backend()


async def serve_node(
    data_dir: DataDir,
    stop: trio.Event | None = None,
    *,
    trust_local_ledger: bool = False,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node's services until cancelled, or until `stop` is set.

    On `stop` the control socket closes first and the requests in flight end
    (an interrupted put tells its holders to drop what they took) while the
    network is still up; then everything else stops. The node's own ledger
    entries wait for peers to confirm its feed (a restored ledger must not
    fork it) unless `trust_local_ledger`.
    """
    # Everything that can refuse to start is opened before the first log line,
    # so a node that cannot start says why in one line.
    config = data_dir.config()
    codec = choose_erasure_backend(os.environ)
    identity = data_dir.identity()
    network_key = data_dir.network_key()
    public = bytes(identity.verify_key)
    membership = open_membership(data_dir, config, public)
    revocations = open_revocations(data_dir, membership)
    store = DiskShardStore(data_dir.root, config.storage.quota_bytes or None)
    transport = TcpTransport(config.listen)
    await transport.bind()
    holdings = Holdings(data_dir.root / HOLDINGS_FILE)
    try:
        with open_ledger(data_dir.root / LEDGER_FILE) as db:
            event(
                log,
                logging.INFO,
                "starting",
                node_id=node_id(public).hex(),
                public_key=public.hex(),
            )
            event(log, logging.INFO, "erasure codec", backend=codec)
            warn_about_membership(data_dir, membership)
            for problem in revocations.problems:
                event(log, logging.WARNING, "revocation not applied", reason=problem)
            node = Node(
                NodeParts(
                    identity=identity,
                    network_key=network_key,
                    config=config,
                    transport=transport,
                    store=store,
                    holdings=holdings,
                    ledger_db=db,
                    random_bytes=os.urandom,
                    wall_clock=time.time,
                    rng=random.SystemRandom(),
                    confirm_own_feed=not trust_local_ledger,
                    membership=membership,
                    revocations_file=data_dir.root / REVOCATIONS_FILE,
                    revocations_aside=tuple(revocations.aside),
                )
            )
            stopping = stop if stop is not None else trio.Event()
            await _serve(node, config, data_dir.root, stopping, task_status=task_status)
    finally:
        holdings.close()
        store.close()


async def _serve(
    node: Node,
    config: NodeConfig,
    root: Path,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[Node],
) -> None:
    peers_path = root / PEERS_FILE
    restored = _load_peers(peers_path)
    bootstrap = [Contact(p.public_key, p.address) for p in config.bootstrap]
    event(
        log,
        logging.INFO,
        "joining",
        restored_contacts=len(restored),
        bootstrap_peers=len(bootstrap),
    )
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(node.serve, bootstrap, restored)
            event(
                log,
                logging.INFO,
                "joined",
                contacts=len(node.dht.routing),
                advertise=node.dht.contact.address,
            )
            ops = ControlOps(node, started=trio.current_time())
            control = trio.CancelScope()
            control_done = trio.Event()

            async def run_control(*, task_status: trio.TaskStatus[Path]) -> None:
                try:
                    with control:
                        await ControlServer(ops, control_path(root)).serve(task_status=task_status)
                finally:
                    control_done.set()

            await nursery.start(run_control)
            http_stop, http_done = trio.Event(), trio.Event()
            if config.http.listen is None:
                http_done.set()
            else:
                # Only a node with `[http] listen` loads the HTTP stack (memory, start time).
                from node.http.server import serve_http  # noqa: PLC0415 - see above
                from node.http.service import node_api  # noqa: PLC0415

                api = node_api(node, root, config.http, ops)

                async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
                    try:
                        await serve_http(
                            api,
                            config.http,
                            http_stop,
                            grace=CONTROL_GRACE,
                            task_status=task_status,
                        )
                    finally:
                        http_done.set()

                await nursery.start(run_http)
            nursery.start_soon(_save_periodically, node.dht, peers_path)
            for peer in config.bootstrap:
                nursery.start_soon(_reach, node.manager, peer)
            task_status.started(node)
            await stop.wait()
            control.cancel()  # requests in flight end first, with the network still up
            http_stop.set()
            with trio.move_on_after(CONTROL_GRACE):
                await control_done.wait()
                await http_done.wait()
            nursery.cancel_scope.cancel()
        finally:
            _save(node.dht, peers_path)  # synchronous: runs even when cancelled


def open_ledger(path: Path) -> LedgerDB:
    """The ledger database; an unusable file is moved aside and a new one started.

    The ledger is replicated: peers gossip every entry back, and the node's
    own feed is confirmed with them before it writes again.
    """
    try:
        return LedgerDB(path)
    except LedgerDBError as exc:
        aside = path.with_name(f"{path.name}.unusable-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
        event(
            log,
            logging.WARNING,
            "ledger file unusable: moved aside, rebuilding from peers",
            moved_to=str(aside),
            reason=str(exc),
        )
        return LedgerDB(path)


def _load_peers(path: Path) -> list[tuple[bytes, str]]:
    try:
        return load_peers(path)
    except UnreadablePeers as exc:
        event(log, logging.WARNING, "peers file ignored", reason=str(exc))
        return []


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


async def run_until_signalled(data_dir: DataDir, trust_local_ledger: bool = False) -> None:
    """Serve until SIGINT or SIGTERM: the first stops cleanly, a second at once."""
    limit_arenas()  # before any worker thread allocates (node.memory)
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run(*, task_status: trio.TaskStatus[Node]) -> None:
                await serve_node(
                    data_dir, stop, trust_local_ledger=trust_local_ledger, task_status=task_status
                )
                nursery.cancel_scope.cancel()  # stopped: no more signals to wait for

            await nursery.start(run)
            async for signum in signals:
                name = signal.Signals(signum).name
                if stop.is_set():
                    event(log, logging.WARNING, "stopping at once", signal=name)
                    nursery.cancel_scope.cancel()
                    break
                event(log, logging.INFO, "stopping", signal=name)
                stop.set()
    event(log, logging.INFO, "stopped")
