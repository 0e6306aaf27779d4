"""Helpers that start connection managers for shell tests."""

from __future__ import annotations

from collections.abc import Callable

import nacl.signing
import trio

from node.config.addresses import PeerAddress, parse_host_port
from node.config.network import Limits
from node.net.connections import ConnectionManager
from node.net.dispatch import Dispatcher, base_dispatcher
from node.net.membership import Membership
from node.net.transport import TcpTransport, Transport
from node.sim.memory import MemoryNetwork
from tests.protocol.keys import NETWORK, seed

TransportFactory = Callable[[], Transport]


def memory_factory() -> TransportFactory:
    network = MemoryNetwork()
    return network.transport


def tcp_factory() -> TransportFactory:
    return lambda: TcpTransport("127.0.0.1:0")


async def start_node(
    nursery: trio.Nursery,
    transport: Transport,
    name: str,
    *,
    network_key: bytes = NETWORK,
    limits: Limits | None = None,
    dispatcher: Dispatcher | None = None,
    membership: Callable[[bytes], Membership] | None = None,
) -> ConnectionManager:
    """`membership`: makes the node's Membership from its public key (None: open network)."""
    identity = nacl.signing.SigningKey(seed(f"node {name}"))
    manager = ConnectionManager(
        identity=identity,
        network_key=network_key,
        transport=transport,
        handler=dispatcher or base_dispatcher(),
        limits=limits,
        membership=membership(bytes(identity.verify_key)) if membership else None,
    )
    await nursery.start(manager.serve)
    return manager


def address_of(manager: ConnectionManager) -> PeerAddress:
    assert manager.address is not None
    host, port = parse_host_port(manager.address)
    return PeerAddress(manager.public_key, host, port)
