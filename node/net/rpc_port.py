"""How services reach peers (DHT, gossip, records): one call interface, two implementations.

`ManagerPort` goes through the connection manager (secret handshake, box
stream, TCP); the simulator provides its own port over an in-process network.
Handlers see the caller only as its authenticated public key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from node.config.addresses import PeerAddress, parse_host_port
from node.net.connections import ConnectionManager
from node.net.errors import PeerUnreachable, RemoteError, RequestError
from protocol.dht.contact import Contact
from protocol.net.messages import Message


class Caller(Protocol):
    """Who sent a request: the key the transport authenticated."""

    @property
    def remote_public_key(self) -> bytes: ...


class RpcPort(Protocol):
    async def call(self, contact: Contact, message: Message, timeout: float) -> Message:
        """Send a request to `contact`; raises RpcError when no answer comes."""
        ...


class ManagerPort:
    def __init__(self, manager: ConnectionManager) -> None:
        self.manager = manager

    async def call(self, contact: Contact, message: Message, timeout: float) -> Message:
        try:
            host, port = parse_host_port(contact.address)
        except ValueError as exc:
            raise PeerUnreachable(f"bad address {contact.address!r}: {exc}") from None
        connection = await self.manager.connect(PeerAddress(contact.public_key, host, port))
        return await connection.call(message, timeout)


class _Self:
    def __init__(self, public_key: bytes) -> None:
        self.remote_public_key = public_key


class SelfRoutingPort:
    """Calls to this node's own key go straight to its dispatcher, others out."""

    def __init__(
        self, port: RpcPort, own: bytes, handler: Callable[[Message, Caller], Awaitable[Message]]
    ):
        self.port = port
        self.own = own
        self.handler = handler

    async def call(self, contact: Contact, message: Message, timeout: float) -> Message:
        if contact.public_key != self.own:
            return await self.port.call(contact, message, timeout)
        with trio.fail_after(timeout):
            try:
                return await self.handler(message, _Self(self.own))
            except RequestError as exc:
                raise RemoteError(exc.code, exc.detail) from None
