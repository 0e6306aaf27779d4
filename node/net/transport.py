"""Byte transports: the interface, and TCP for real nodes (in-memory: node.sim.memory).

Both hand out trio streams and run inbound connections in a nursery the
caller owns; everything above (handshake, box stream, RPC) is the same code.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable

import trio

from node.config.addresses import format_host_port, parse_host_port
from node.net.errors import ListenError

# Called with each inbound stream and the host it came from ("" when unknown):
# per-source limits need to know who is knocking before any handshake.
StreamHandler = Callable[[trio.abc.Stream, str], Awaitable[None]]


class Transport(abc.ABC):
    @abc.abstractmethod
    async def connect(self, address: str) -> trio.abc.Stream:
        """Open a byte stream to `address`; OSError when nobody answers."""

    @abc.abstractmethod
    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled; reports the bound address when ready."""


class TcpTransport(Transport):
    """TCP on the given listen address (port 0: a free port, reported at start)."""

    def __init__(self, listen: str = "127.0.0.1:0") -> None:
        self.host, self.port = parse_host_port(listen)
        self._listeners: list[trio.SocketListener] | None = None

    async def bind(self) -> None:
        """Take the listening address now (ListenError if it cannot be had)."""
        try:
            self._listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as exc:
            where = format_host_port(self.host, self.port)
            reason = exc.strerror or str(exc)
            raise ListenError(exc.errno, f"cannot listen on {where}: {reason}") from None

    async def connect(self, address: str) -> trio.abc.Stream:
        host, port = parse_host_port(address)
        return await trio.open_tcp_stream(host, port)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._listeners is None:
            await self.bind()
        listeners, self._listeners = self._listeners or [], None
        sockname = listeners[0].socket.getsockname()
        bound = format_host_port(self.host, sockname[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, guarded(handler, _peer_host), listeners)
            task_status.started(bound)


def guarded(
    handler: StreamHandler, host_of: Callable[[trio.abc.Stream], str]
) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """Hand the stream and its source host on; close the stream whatever the handler does."""

    async def run(stream: trio.abc.Stream) -> None:
        async with stream:
            await handler(stream, host_of(stream))

    return run


def _peer_host(stream: trio.abc.Stream) -> str:
    """The remote IP address of a TCP stream ("" if it has none any more)."""
    if not isinstance(stream, trio.SocketStream):
        return ""
    try:
        peer = stream.socket.getpeername()
    except OSError:  # reset before we looked
        return ""
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)
