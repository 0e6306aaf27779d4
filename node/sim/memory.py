"""The in-memory transport: named endpoints joined by memory streams, for tests and simulation.

The same contract as TCP (node.net.transport.Transport), so handshake, box-stream
and RPC run unchanged over it; it uses trio.testing, which the product never imports.
"""

from __future__ import annotations

import itertools

import trio
import trio.testing

from node.net.transport import StreamHandler, Transport, guarded


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

    def _open(self, address: str, source: str) -> trio.abc.Stream:
        entry = self._listeners.get(address)
        if entry is None:
            raise OSError(f"connection to {address} refused (nobody listening)")
        nursery, handler = entry
        client, server = trio.testing.memory_stream_pair()
        host = source.rsplit(":", 1)[0]  # the dialer's endpoint name stands for its host
        nursery.start_soon(guarded(handler, lambda _: host), server)
        return client


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, address: str) -> None:
        self.network = network
        self.address = address

    async def connect(self, address: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return self.network._open(address, self.address)

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
