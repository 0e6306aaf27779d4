"""`medvault run`: one node in the foreground, stopped cleanly by SIGINT/SIGTERM.

Every service starts with `nursery.start`, so "listening" is logged only when
the node really accepts connections. Bootstrap peers are contacted until each
answers a ping once (backing off between tries).
"""

from __future__ import annotations

import logging
import signal

import trio

from node.config import PeerAddress
from node.connections import ConnectionManager
from node.datadir import DataDir
from node.dispatch import base_dispatcher
from node.logs import event, get_logger, short_key
from node.rpc_errors import RpcError
from node.transport import TcpTransport
from protocol.ids import node_id
from protocol.messages import Ping, Pong

log = get_logger("daemon")


async def serve_node(
    data_dir: DataDir, *, task_status: trio.TaskStatus[ConnectionManager] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the node's services until cancelled."""
    config = data_dir.config()
    identity = data_dir.identity()
    manager = ConnectionManager(
        identity=identity,
        network_key=data_dir.network_key(),
        transport=TcpTransport(config.listen),
        handler=base_dispatcher(),
        limits=config.limits,
    )
    public = bytes(identity.verify_key)
    event(log, logging.INFO, "starting", node_id=node_id(public).hex(), public_key=public.hex())
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.serve)
        for peer in config.bootstrap:
            nursery.start_soon(_reach, manager, peer)
        task_status.started(manager)


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
