"""The holder side of records: the parts that store, serve, check and delete shard
blocks, wired together, and the one face the rest of the node uses.

Each part has one job and routes its own messages:
- uploads (node.records.uploads): who may upload what, pending bytes per writer,
  uploads their writer dropped;
- intake (node.records.intake): storing batches, completing indices, proving a
  StoreAndProve batch from its own blocks;
- challenges (node.records.proving): ProveShards, asked apart by the sender;
- reads (node.records.serving): FetchBlocks through the read gate, manifests,
  holder proofs;
- scrubber (node.records.scrub): damaged blocks found by reads, verifies, the scrub;
- removal (node.records.removal): deleting records and what failed uploads left.
Decoded manifests are shared by all of them (node.records.manifests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable

from node.logs import RateLimitedLog, event, get_logger
from node.net.dispatch import Dispatcher
from node.net.rpc_port import Caller
from node.offload import in_worker
from node.records.announcing import Announcements
from node.records.block_refs import BlockRefs
from node.records.intake import ShardIntake
from node.records.manifests import ManifestCache
from node.records.pending import PendingBytes
from node.records.proving import Challenges
from node.records.read_gate import ReadGate
from node.records.removal import Removal
from node.records.scrub import Scrubber
from node.records.serving import BlockServer
from node.records.spares import SparePacks
from node.records.uploads import Uploads
from node.records.views import RecordViews
from node.records.witness import Witness
from protocol.ids import record_dht_key
from protocol.ledger.state import LedgerState
from protocol.records.messages import (
    BlocksFound,
    FetchBlocks,
    GetNodeInfo,
    HolderProof,
    NodeInfo,
)
from storage.codec.manifest import Manifest
from storage.store.holdings import Holdings
from storage.store.shard_store import ShardStore

log = get_logger("shards")
UNLIMITED_FREE = 2**62

Announce = Callable[[bytes], None]


class ShardService:
    def __init__(
        self,
        *,
        store: ShardStore,
        holdings: Holdings,
        site: str,
        announce: Announce,
        withdraw: Announce,
        clock_ms: Callable[[], int],
        recorded: Callable[[bytes], bool] = lambda record_id: False,
        pending_cap: int = 2**62,
        ledger_state: Callable[[], LedgerState] = LedgerState,  # none: only uploaders read
        own_key: bytes = bytes(32),
        views: RecordViews | None = None,
        site_of: Callable[[bytes], str | None] = lambda node: None,
        witness: Witness | None = None,
    ) -> None:
        self.store = store
        self.holdings = holdings
        self.site = site
        self.announce = announce
        self.recorded = recorded  # whether the ledger knows the record
        self.clock_ms = clock_ms
        self.announcements = Announcements(announce, recorded)  # once recorded
        self.manifests = ManifestCache(holdings)
        self.pending = PendingBytes(pending_cap)  # rebuilt by rebuild_pending at start
        self.gate = ReadGate(
            state=ledger_state,
            holdings=holdings,
            own_key=own_key,
            clock_ms=clock_ms,
            views=views,
            site_of=site_of,
        )
        refused = RateLimitedLog(log, "shards refused", period=600.0)
        begun: set[tuple[bytes, int]] = set()  # (record, index) noted in holdings
        refs = BlockRefs(store, holdings)  # storing-and-noting against freeing
        self.scrubber = Scrubber(
            store=store, holdings=holdings, manifests=self.manifests, clock_ms=clock_ms
        )
        self.removal = Removal(
            store=store,
            holdings=holdings,
            manifests=self.manifests,
            pending=self.pending,
            announcements=self.announcements,
            withdraw=withdraw,
            begun=begun,
            refs=refs,
        )
        self.uploads = Uploads(
            holdings=holdings,
            pending=self.pending,
            recorded=recorded,
            refused=refused,
            delete_record=self.removal.delete_record,
        )
        self.challenges = Challenges(
            store=store, manifests=self.manifests, scrubber=self.scrubber, refused=refused
        )
        self.spares = SparePacks(store)  # pack files made ahead (serve runs in the node)
        self.intake = ShardIntake(
            store=store,
            holdings=holdings,
            manifests=self.manifests,
            uploads=self.uploads,
            challenges=self.challenges,
            announcements=self.announcements,
            ledger_state=ledger_state,
            clock_ms=clock_ms,
            delete_record=self.removal.delete_record,
            begun=begun,
            refs=refs,
            stored=self.spares.taken,
        )
        self.reads = BlockServer(
            store=store,
            holdings=holdings,
            manifests=self.manifests,
            gate=self.gate,
            ledger_state=ledger_state,
            witness=witness,
            scrubber=self.scrubber,
        )

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(GetNodeInfo, self._on_node_info)
        for part in (self.uploads, self.intake, self.challenges, self.reads, self.scrubber):
            part.install(dispatcher)

    def manifest(self, record_id: bytes) -> Manifest | None:
        """The manifest of a record this node holds shards of."""
        return self.manifests.get(record_id)

    async def sweep_unnoted(self) -> int:
        """Blocks on disk no holdings row names, deleted (node.records.removal); at start."""
        swept = await in_worker(self.removal.sweep_unnoted)
        if swept is None:
            event(
                log,
                logging.WARNING,
                "unnoted shard blocks kept",
                blocks=len(self.store.digests()),
                hint="holdings.sqlite names fewer than half the blocks on disk:"
                " lost, restored or replaced? blocks not deleted",
            )
            return 0
        if swept:
            event(log, logging.WARNING, "unnoted shard blocks deleted", blocks=swept)
        return swept

    def rebuild_pending(self) -> None:
        """Count every writer's bytes of unrecorded records again, from holdings."""
        self.pending.rebuild(self.holdings.pending_weights(), self.recorded)

    def now_recorded(self, record_ids: Iterable[bytes]) -> None:
        """The ledger accepted entries of these records: those now known stop being
        pending (wired to the ledger's listener)."""
        for record_id in record_ids:
            if record_id in self.pending and self.recorded(record_id):
                self.pending.release(record_id)
            self.announcements.recorded([record_id])

    def announce_all(self) -> int:
        """Announce every record held (at start: the DHT forgets announcements)."""
        held = 0
        for record_id in self.holdings.records():
            if self.holdings.indices(record_id)[0]:
                self.announce(record_dht_key(record_id))
                held += 1
        return held

    async def _on_node_info(self, message: GetNodeInfo, caller: Caller) -> NodeInfo:
        capacity = self.store.capacity
        free = UNLIMITED_FREE if capacity is None else max(0, capacity - self.store.used_bytes)
        return NodeInfo(self.site, free)

    # -- what the rest of the node asks of the parts ------------------------------

    async def serve_fetch(
        self, message: FetchBlocks, caller: Caller, *, inline: bool = False
    ) -> BlocksFound:
        """A FetchBlocks answered (node.records.serving; also for FetchHeld)."""
        return await self.reads.serve_fetch(message, caller, inline)

    async def holder_proof(
        self, manifest: Manifest, server: bytes, bucket: int
    ) -> HolderProof | None:
        """This node's block for a holder proof (node.records.serving)."""
        return await self.reads.holder_proof(manifest, server, bucket)

    async def scrub_some(self, budget: int) -> tuple[int, list[tuple[bytes, int]]]:
        """Verify up to `budget` bytes of held blocks (node.records.scrub)."""
        return await self.scrubber.scrub_some(budget)

    async def delete_record(self, record_id: bytes) -> int:
        """Delete every block held of a record (node.records.removal)."""
        return await self.removal.delete_record(record_id)

    async def collect(
        self, known: Container[bytes], before_ms: int, partial_before_ms: int | None = None
    ) -> tuple[int, int]:
        """Delete what failed uploads left: (records, shard indices) (node.records.removal)."""
        return await self.removal.collect(known, before_ms, partial_before_ms)

    def orphans(self, known: Container[bytes]) -> tuple[int, int]:
        """(records or indices, bytes) held that no finished upload accounts for."""
        return self.removal.orphans(known)
