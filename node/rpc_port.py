"""How the DHT reaches peers: one call interface, two implementations.

`ManagerPort` goes through the connection manager (secret handshake, box
stream, TCP); the simulator provides its own port over an in-process network.
Handlers see the caller only as its authenticated public key.
"""

from __future__ import annotations

from typing import Protocol

from node.config import PeerAddress, parse_host_port
from node.connections import ConnectionManager
from node.rpc_errors import PeerUnreachable
from protocol.contact import Contact
from protocol.messages import Message


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
