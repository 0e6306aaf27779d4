"""Spare pack files, made ahead of the batches that fill them (storage.store.disk).

A batch written into a spare pays one fsync (its pack), not two (its pack and
its new directory entry): each fsync is a device cache flush, about a third of
a small batch's time on a holder. The spares are refilled in a worker thread
after batches took them, never on a batch's own path; a store that cannot make
them (a full disk) writes batches as before and says so, rate-limited.
"""

from __future__ import annotations

import trio

from node.logs import RateLimitedLog, get_logger
from node.offload import in_worker
from storage.errors import StorageError
from storage.store.shard_store import ShardStore

_failed = RateLimitedLog(get_logger("shards"), "spare shard packs not made", period=600.0)


class SparePacks:
    def __init__(self, store: ShardStore) -> None:
        self.store = store
        self._taken = trio.Event()

    def taken(self) -> None:
        """A batch was written: the store may have used a spare."""
        self._taken.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the store's spares made until cancelled."""
        task_status.started()
        while True:
            try:
                await in_worker(self.store.make_spares)
            except (OSError, StorageError) as exc:
                _failed.note(type(exc).__name__, detail=str(exc))
            await self._taken.wait()
            self._taken = trio.Event()
