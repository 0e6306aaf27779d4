"""Finding damaged blocks held here: reads that fail, GetHoldings' verify, the scrub.

An index counts as held only while every block of it is whole on disk; a
block found lost or corrupt demotes its index (holdings' incomplete), so
what this node answers about its holdings stays true and repair rebuilds
the index. Reading blocks is the cost: a verify asked by peers is rate-limited
per record, the background scrub reads a byte budget per call.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

from node.logs import event, get_logger
from node.net.dispatch import Dispatcher
from node.net.rpc_port import Caller
from node.offload import in_worker
from node.records.manifests import ManifestCache
from protocol.records.messages import GetHoldings, HoldingsFound
from storage.codec.manifest import Manifest
from storage.errors import CorruptShard, ShardNotFound
from storage.store.holdings import Holdings
from storage.store.shard_store import ShardStore

log = get_logger("shards")
VERIFY_EVERY_MS = 600_000  # a record's held blocks are read back for a verify this often
MAX_VERIFIED = 4096  # records whose last verify is remembered
SCRUB_ROWS = 256  # holdings rows read at a time by the scrub


class Scrubber:
    def __init__(
        self,
        *,
        store: ShardStore,
        holdings: Holdings,
        manifests: ManifestCache,
        clock_ms: Callable[[], int],
    ) -> None:
        self.store = store
        self.holdings = holdings
        self.manifests = manifests
        self.clock_ms = clock_ms
        self._verified: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self._scrub_cursor = 0  # where the background scrub resumes (a holdings position)

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(GetHoldings, self._on_holdings)

    def demote_on_read(self, record_id: bytes, index: int) -> None:
        """A read found a block of `index` lost or corrupt: demote it, and say so once."""
        if index not in self.holdings.indices(record_id)[0]:
            return  # never held whole here (a reader asks around), or already demoted
        self.holdings.incomplete(record_id, index)
        event(
            log,
            logging.WARNING,
            "damaged shard found",
            record=record_id.hex()[:16],
            index=index,
            found_by="read",
        )

    async def _on_holdings(self, message: GetHoldings, caller: Caller) -> HoldingsFound:
        complete, partial = self.holdings.indices(message.record_id)
        corrupt: list[int] = []
        manifest = self.manifests.get(message.record_id)
        if message.verify and manifest is not None and self._verify_due(message.record_id):
            # Read every block held: at most once per VERIFY_EVERY_MS per record, or a
            # member asking again and again would have this node read its disk for free
            # (what an earlier verify found is demoted, so the answer stays true).
            corrupt = await in_worker(self._scrub, manifest, complete)
            complete = [i for i in complete if i not in corrupt]
            partial = sorted([*partial, *corrupt])
        return HoldingsFound(tuple(complete), tuple(partial), tuple(corrupt))

    def _verify_due(self, record_id: bytes) -> bool:
        now = self.clock_ms()
        last = self._verified.get(record_id)
        if last is not None and now - last < VERIFY_EVERY_MS:
            return False
        self._verified[record_id] = now
        self._verified.move_to_end(record_id)
        while len(self._verified) > MAX_VERIFIED:
            self._verified.popitem(last=False)
        return True

    def _scrub(self, manifest: Manifest, indices: list[int]) -> list[int]:
        """In a worker thread: read every block of `indices`; demote those not whole."""
        bad = []
        for index in indices:
            for segment in range(manifest.segment_count):
                try:
                    self.store.get(manifest.block_hash(segment, index))
                except (CorruptShard, ShardNotFound):
                    bad.append(index)
                    self.holdings.incomplete(manifest.record_id, index)
                    break
        return bad

    async def scrub_some(self, budget: int) -> tuple[int, list[tuple[bytes, int]]]:
        """Verify up to `budget` bytes of held blocks, resuming where the last call
        stopped; (blocks read, (record, index) found damaged, now incomplete)."""
        return await in_worker(self._scrub_some, budget)

    def _scrub_some(self, budget: int) -> tuple[int, list[tuple[bytes, int]]]:
        checked = 0
        damaged: list[tuple[bytes, int]] = []
        start, wrapped = self._scrub_cursor, False
        while budget > 0:
            rows = self.holdings.held_blocks_after(self._scrub_cursor, SCRUB_ROWS)
            if wrapped:  # at most one round per call
                rows = [row for row in rows if row[0] <= start]
            if not rows:
                if wrapped or self._scrub_cursor == 0:
                    break
                self._scrub_cursor, wrapped = 0, True  # start the next round
                continue
            for position, record_id, index, digest, size in rows:
                self._scrub_cursor = position
                checked += 1
                try:
                    budget -= len(self.store.get(digest))
                except (CorruptShard, ShardNotFound):
                    budget -= max(size, 1)
                    if (record_id, index) not in damaged:
                        damaged.append((record_id, index))
                        self.holdings.incomplete(record_id, index)
                if budget <= 0:
                    break
        return checked, damaged
