"""Deleting what this node holds: a whole record (tombstoned, dropped by its uploader,
or never recorded), and what failed uploads left behind (the orphan sweep).

Only blocks noted as received for a record are deleted with it, never what
its manifest names, and a block another record references is kept (content
addressing shares identical blocks): a member's manifest naming a victim's
blocks destroys nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container

from node.logs import event, get_logger
from node.offload import in_worker
from node.records.announcing import Announcements
from node.records.block_refs import BlockRefs
from node.records.manifests import ManifestCache
from node.records.pending import PendingBytes
from protocol.ids import record_dht_key
from storage.store.holdings import Holdings
from storage.store.shard_store import ShardStore

log = get_logger("shards")


class Removal:
    def __init__(
        self,
        *,
        store: ShardStore,
        holdings: Holdings,
        manifests: ManifestCache,
        pending: PendingBytes,
        announcements: Announcements,
        withdraw: Callable[[bytes], None],
        begun: set[tuple[bytes, int]],
        refs: BlockRefs,
    ) -> None:
        self.store = store
        self.holdings = holdings
        self.manifests = manifests
        self.pending = pending
        self.announcements = announcements
        self.withdraw = withdraw  # stop providing a DHT key
        self.begun = begun  # (record, index) noted in holdings: the intake's, shared
        self.refs = refs  # frees only what no batch noted meanwhile

    async def delete_record(self, record_id: bytes) -> int:
        """Delete every block held of a record (tombstoned, or never recorded)."""
        deleted = await in_worker(self._remove_record, record_id)
        self.pending.release(record_id)
        self.announcements.forget(record_id)
        self.withdraw(record_dht_key(record_id))
        event(
            log, logging.INFO, "record shards deleted", record=record_id.hex()[:16], blocks=deleted
        )
        return deleted

    def _remove_record(self, record_id: bytes) -> int:
        """In a worker thread: the record's rows, and the blocks no other record references.

        Only blocks noted as received for this record count, never what its
        manifest names: a manifest anyone could write may name another
        record's blocks, and a block another record references is never
        deleted (content addressing shares identical blocks).
        """
        free = self.holdings.remove(record_id)
        self.manifests.forget(record_id)
        self.begun.difference_update([key for key in self.begun if key[0] == record_id])
        return self.refs.free(free)

    async def collect(
        self, known: Container[bytes], before_ms: int, partial_before_ms: int | None = None
    ) -> tuple[int, int]:
        """Delete what failed uploads left: (records, shard indices).

        A record the ledger does not know, no block of which arrived since
        `before_ms`, is an upload that never finished (the ledger entry comes
        after the holders confirm, and gossip brings it within the grace
        period), or shards a member sent and never recorded; an index of a
        known record never completed, untouched since `partial_before_ms`
        (default: `before_ms`), is a transfer to this node that was given up.
        """
        records = [r for r in self.holdings.idle_before(before_ms) if r not in known]
        for record_id in records:
            await self.delete_record(record_id)
        partial_before_ms = before_ms if partial_before_ms is None else partial_before_ms
        partial = [(r, i) for r, i in self.holdings.partial_before(partial_before_ms) if r in known]
        for record_id, index in partial:
            await in_worker(self._remove_index, record_id, index)
        if records or partial:
            event(
                log, logging.INFO, "orphans collected", records=len(records), indices=len(partial)
            )
        return len(records), len(partial)

    def sweep_unnoted(self) -> int | None:
        """In a worker thread, at start: delete the blocks no holdings row names; how many.

        Every block a batch stores is noted in holdings before the batch is
        acknowledged; one that is not was left by a crash in between (a pack
        written whole but not indexed is adopted at open, node.records.block_refs
        says why a live batch cannot be caught half-way). Nothing else would ever
        collect such blocks, and they count against the quota. A crash leaves only the
        batches in flight; a store where unnoted blocks outnumber noted ones is left
        alone (`None`): that is a lost, replaced or older holdings.sqlite (one batch
        noted since, by any member, would otherwise cost the whole store at the next
        start), and an operator should see it before anything is deleted."""
        digests = self.store.digests()
        noted = self.holdings.first_noted(digests)
        unnoted = [d for d in digests if d not in noted]
        if len(unnoted) > len(noted):
            return None
        return self.refs.free(unnoted)

    def orphans(self, known: Container[bytes]) -> tuple[int, int]:
        """(records or indices, bytes) held that no finished upload accounts for.

        A record the ledger does not know, or an index of a known record that
        never completed: what `collect` (and `medvault gc`) would delete.
        """
        whole, partial = self.holdings.weights()
        unknown = [r for r in self.holdings.records() if r not in known]
        pieces = len(unknown) + sum(1 for r, _ in self.holdings.partial_before(2**62) if r in known)
        size = sum(whole.get(r, 0) for r in unknown)
        size += sum(bytes_ for r, bytes_ in partial.items() if r in known)
        return pieces, size

    def _remove_index(self, record_id: bytes, index: int) -> None:
        self.refs.free(self.holdings.remove_index(record_id, index))
        self.begun.discard((record_id, index))
