"""Byte transports: TCP for real nodes, in-memory for tests and simulation.

Both hand out trio streams and run inbound connections in a nursery the
caller owns; everything above (handshake, box stream, RPC) is the same code.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from node.config.settings import format_host_port, parse_host_port

StreamHandler = Callable[[trio.abc.Stream], Awaitable[None]]


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

    async def connect(self, address: str) -> trio.abc.Stream:
        host, port = parse_host_port(address)
        return await trio.open_tcp_stream(host, port)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        sockname = listeners[0].socket.getsockname()
        bound = format_host_port(self.host, sockname[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, _guarded(handler), listeners)
            task_status.started(bound)


def _guarded(handler: StreamHandler) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """Make sure a stream is closed whatever the handler does."""

    async def run(stream: trio.abc.Stream) -> None:
        async with stream:
            await handler(stream)

    return run


class MemoryNetwork:
    """An in-process network of named endpoints joined by memory streams."""

    def __init__(self) -> None:
        self._listeners: dict[str, tuple[trio.Nursery, StreamHandler]] = {}
        self._names = itertools.count(1)

    def transport(self, address: str | None = None) -> MemoryTransport:
        return MemoryTransport(self, address or f"mem-{next(self._names)}:1")

    def listening(self, address: str) -> bool:
        return address in self._listeners

    def _register(self, address: str, nursery: trio.Nursery, handler: StreamHandler) -> None:
        if address in self._listeners:
            raise OSError(f"address {address} is already in use")
        self._listeners[address] = (nursery, handler)

    def _unregister(self, address: str) -> None:
        self._listeners.pop(address, None)

    def _open(self, address: str) -> trio.abc.Stream:
        entry = self._listeners.get(address)
        if entry is None:
            raise OSError(f"connection to {address} refused (nobody listening)")
        nursery, handler = entry
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(_guarded(handler), server)
        return client


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, address: str) -> None:
        self.network = network
        self.address = address

    async def connect(self, address: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return self.network._open(address)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self.network._register(self.address, nursery, handler)
            try:
                task_status.started(self.address)
                await trio.sleep_forever()
            finally:
                self.network._unregister(self.address)
