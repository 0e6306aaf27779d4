"""Sending one holder its shards of a record: batched, bounded, in order.

The putting (or repairing) node feeds each holder's sender the blocks of that
holder's indices segment by segment; the sender batches them (about
`batch_bytes` per call, one call in flight) and, once the manifest is known,
sends the last batch of each index with the manifest and `complete`. A
holder whose call fails is marked failed and its further blocks dropped, so
one dead node neither blocks nor fails the others.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from node.rpc_errors import RpcError
from node.rpc_port import RpcPort
from protocol.contact import Contact
from protocol.shard_messages import ShardsStored, StoreShards
from storage.manifest import Manifest

Blocks = dict[int, bytes]  # shard index -> block of one segment


class HolderSender:
    def __init__(
        self,
        *,
        port: RpcPort,
        holder: Contact,
        record_id: bytes,
        indices: list[int],
        first_segment: int = 0,
        batch_bytes: int,
        timeout: float,
    ) -> None:
        self.port = port
        self.holder = holder
        self.record_id = record_id
        self.indices = indices
        self.batch_bytes = batch_bytes
        self.timeout = timeout
        self.failure: str | None = None
        self.confirmed = False
        self._pending: dict[int, list[bytes]] = {i: [] for i in indices}
        self._first = dict.fromkeys(indices, first_segment)
        self._size = 0
        self.send, self._receive = trio.open_memory_channel[Blocks](2)

    async def run(self, manifest: Callable[[], Manifest]) -> None:
        """Consume blocks until the feeder closes the channel, then complete."""
        async with self._receive:
            async for blocks in self._receive:
                if self.failure is not None:
                    continue  # drain: the feeder must never block on a dead holder
                for index, block in blocks.items():
                    self._pending[index].append(block)
                    self._size += len(block)
                if self._size >= self.batch_bytes:
                    await self._flush(None)
        if self.failure is None:
            await self._flush(manifest())

    async def _flush(self, manifest: Manifest | None) -> None:
        final = manifest is not None
        raw = manifest.encode() if manifest is not None else None
        complete = True
        for index in self.indices:
            blocks = self._pending[index]
            if not blocks and not final:
                continue
            message = StoreShards(
                self.record_id, raw, index, self._first[index], tuple(blocks), final
            )
            try:
                answer = await self.port.call(self.holder, message, self.timeout)
            except RpcError as exc:
                self.failure = str(exc)
                return
            if not isinstance(answer, ShardsStored):
                self.failure = f"unexpected answer {answer.TYPE}"
                return
            complete = complete and answer.complete
            self._first[index] += len(blocks)
            self._pending[index] = []
        self._size = 0
        if final:
            self.confirmed = complete
            if not complete:
                self.failure = "holder did not confirm every block"
