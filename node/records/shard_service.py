"""The holder side of records: store, serve, verify and delete shard blocks.

Blocks arrive per shard index in batches (StoreShards). The shard store is
content-addressed, so blocks can be kept before the record's manifest is
known (a streaming put sends it with the last batch); once it is, every block
is checked against it, and an index counts as held only when every
segment's block of it is stored (the node announces itself as a provider
once the record is also recorded: node.records.announcing).
Disk and hashing work runs in worker threads.

Blocks of a record the ledger does not know are charged to its writer
(node.records.pending): past `pending_cap` bytes per writer a batch is
refused before anything is written, and upkeep deletes such a record a
short grace after its last block arrived.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Callable, Container, Iterable

from node.logs import RateLimitedLog, event, get_logger, short_key
from node.net.dispatch import Dispatcher
from node.net.errors import RequestError
from node.net.rpc_port import Caller
from node.offload import in_worker
from node.records.announcing import Announcements
from node.records.pending import PendingBytes, Reservation
from node.records.read_gate import ReadGate
from node.records.views import RecordViews
from node.records.witness import Witness
from protocol.ids import record_dht_key
from protocol.ledger.entries import derive_record_id
from protocol.ledger.state import LedgerState
from protocol.net.messages import ErrorCode
from protocol.records.holder_proof import proof_segment
from protocol.records.messages import (
    BlocksFound,
    DropShards,
    FetchBlocks,
    GetHoldings,
    GetManifest,
    GetNodeInfo,
    HolderProof,
    HoldingsFound,
    ManifestFound,
    NodeInfo,
    ProveShards,
    ShardsDropped,
    ShardsProven,
    ShardsStored,
    ShardsStoredProven,
    StoreAndProve,
    StoreShards,
)
from protocol.records.proofs import NONCE_SIZE, block_proof
from storage.codec.hashing import shard_hash_v3
from storage.codec.manifest import Manifest
from storage.errors import BlockMismatch, CorruptShard, ManifestError, ShardNotFound, StoreFull
from storage.store.holdings import ROW_WEIGHT, Holdings
from storage.store.shard_store import ShardStore

log = get_logger("shards")
MAX_FETCH_BYTES = 3 * 1024 * 1024
UNLIMITED_FREE = 2**62
VERIFY_EVERY_MS = 600_000  # a record's held blocks are read back for a verify this often
MAX_CHALLENGERS = 4096  # completed indices whose sender may still ask for their proof
MAX_DROPPED = 4096  # dropped uploads remembered, to refuse their late blocks
SCRUB_ROWS = 256  # holdings rows read at a time by the scrub
MANIFEST_CACHE_BYTES = 32 * 1024 * 1024  # decoded manifests kept in memory, by weight

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
        self.witness = witness  # told of each read served under an access statement
        self.recorded = recorded  # whether the ledger knows the record
        self._ledger_state = ledger_state
        self.gate = ReadGate(
            state=ledger_state,
            holdings=holdings,
            own_key=own_key,
            clock_ms=clock_ms,
            views=views,
            site_of=site_of,
        )
        self.holdings = holdings
        self.clock_ms = clock_ms
        self.site = site
        self.announce = announce
        self.announcements = Announcements(announce, recorded)  # once recorded
        self.withdraw = withdraw
        # Decoded manifests of held records, most recently used last, at most
        # MANIFEST_CACHE_BYTES of block hashes (a member can send huge ones).
        self._manifests: collections.OrderedDict[bytes, Manifest] = collections.OrderedDict()
        self._manifest_bytes = 0
        self._cache_lock = threading.Lock()  # worker threads store and delete too
        self._begun: set[tuple[bytes, int]] = set()  # (record, index) noted in holdings
        self._scrub_cursor = 0  # where the background scrub resumes (a holdings position)
        # Uploads their writer dropped: blocks of them still in flight are refused.
        self._dropped: collections.OrderedDict[tuple[bytes, bytes], None] = (
            collections.OrderedDict()
        )  # (record, writer): that writer's late batches of that record are refused
        self.pending = PendingBytes(pending_cap)  # rebuilt by rebuild_pending at start
        self._capped = RateLimitedLog(log, "pending shard bytes capped", period=3600.0)
        self._refused_uploads = RateLimitedLog(log, "shards refused", period=600.0)
        self._verified: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        # (record, index) -> the node that completed it here: the one that may prove it.
        self._challengers: collections.OrderedDict[tuple[bytes, int], bytes] = (
            collections.OrderedDict()
        )

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(GetNodeInfo, self._on_node_info)
        dispatcher.route(StoreShards, self._on_store)
        dispatcher.route(FetchBlocks, self._on_fetch)
        dispatcher.route(GetManifest, self._on_manifest)
        dispatcher.route(GetHoldings, self._on_holdings)
        dispatcher.route(DropShards, self._on_drop)
        dispatcher.route(ProveShards, self._on_prove)
        dispatcher.route(StoreAndProve, self._on_store_and_prove)

    def manifest(self, record_id: bytes) -> Manifest | None:
        """The manifest of a record this node holds shards of."""
        with self._cache_lock:
            cached = self._manifests.get(record_id)
            if cached is not None:
                self._manifests.move_to_end(record_id)
                return cached
        raw = self.holdings.manifest(record_id)
        if raw is None:
            return None
        manifest = Manifest.decode(raw)
        self._cache_manifest(manifest)
        return manifest

    def _cache_manifest(self, manifest: Manifest) -> None:
        with self._cache_lock:
            self._drop_cached(manifest.record_id)
            self._manifests[manifest.record_id] = manifest
            self._manifest_bytes += _weight(manifest)
            while self._manifest_bytes > MANIFEST_CACHE_BYTES and len(self._manifests) > 1:
                _, dropped = self._manifests.popitem(last=False)
                self._manifest_bytes -= _weight(dropped)

    def _forget_manifest(self, record_id: bytes) -> None:
        with self._cache_lock:
            self._drop_cached(record_id)

    def _drop_cached(self, record_id: bytes) -> None:
        dropped = self._manifests.pop(record_id, None)
        if dropped is not None:
            self._manifest_bytes -= _weight(dropped)

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

    # -- handlers --------------------------------------------------------------

    async def _on_node_info(self, message: GetNodeInfo, caller: Caller) -> NodeInfo:
        capacity = self.store.capacity
        free = UNLIMITED_FREE if capacity is None else max(0, capacity - self.store.used_bytes)
        return NodeInfo(self.site, free)

    async def _on_store(self, message: StoreShards, caller: Caller) -> ShardsStored:
        stored, complete, _ = await self._store_batch(message, caller.remote_public_key, None)
        return ShardsStored(stored, complete)

    async def _on_store_and_prove(
        self, message: StoreAndProve, caller: Caller
    ) -> ShardsStoredProven:
        """A completing batch with its storage challenge: the proofs are keyed hashes of
        the batch's own blocks (checked against the manifest and on disk first), so a
        challenge costs at most one hash per block the sender just paid to send."""
        if len(message.nonce) != NONCE_SIZE:
            raise RequestError(ErrorCode.BAD_REQUEST, f"a proof nonce is {NONCE_SIZE} bytes")
        segments = message.segments
        if not segments or any(b <= a for a, b in itertools.pairwise(segments)):
            raise RequestError(
                ErrorCode.BAD_REQUEST, "a challenge names segments in increasing order"
            )
        challenge = (message.nonce, segments)
        stored, complete, proofs = await self._store_batch(
            message.as_store(), caller.remote_public_key, challenge
        )
        return ShardsStoredProven(stored, complete, proofs)

    async def _store_batch(
        self,
        message: StoreShards,
        sender: bytes,
        challenge: tuple[bytes, tuple[int, ...]] | None,
    ) -> tuple[int, bool, tuple[bytes | None, ...]]:
        """Store a batch, complete its index if it says so; (blocks stored, complete,
        proofs of the batch's blocks under `challenge` once complete)."""
        record_id = message.record_id
        dropped = (record_id, sender)
        if dropped in self._dropped and not self.recorded(record_id):
            raise RequestError(ErrorCode.BAD_REQUEST, "this upload was dropped by its writer")
        self._check_uploader(message, sender)
        charge = self._reserve(message, sender)
        added = 0
        keep = True
        try:
            try:
                # A completing batch is stored and completed in one thread hop.
                outcome = await in_worker(self._store_finishing, message, sender, challenge)
            except BlockMismatch as exc:
                raise RequestError(ErrorCode.BAD_REQUEST, str(exc)) from None
            except StoreFull as exc:
                raise RequestError(ErrorCode.UNAVAILABLE, str(exc)) from None
            stored, added, complete, proofs = outcome
            if dropped in self._dropped and not self.recorded(record_id):
                # dropped while this batch was being written
                keep = False
                await self.delete_record(record_id)
                raise RequestError(ErrorCode.BAD_REQUEST, "this upload was dropped by its writer")
            if complete:
                if challenge is None:  # else the challenge came with the batch
                    self._may_challenge(record_id, message.index, sender)
                self.announcements.held(record_id)
                event(
                    log,
                    logging.INFO,
                    "shard held",
                    record=record_id.hex()[:16],
                    index=message.index,
                )
        finally:
            if charge is not None:
                self.pending.settle(charge, added, keep=keep and not self.recorded(record_id))
        return stored, complete, proofs

    def _check_uploader(self, message: StoreShards, sender: bytes) -> None:
        """A record the ledger does not know is uploaded by its owner alone.

        Its id is derived from the owner's key and a nonce; a batch proves its
        sender is the owner by that nonce. Otherwise a member that saw a record
        id (it holds an index of a put in progress) could send other holders a
        manifest of its own for it and make the honest upload fail there, charge
        junk to the writer, or drop the writer's blocks as "its" upload.
        """
        if self.recorded(message.record_id):
            return
        nonce = message.owner_nonce
        if nonce is None:  # a repair onto this node, most likely, ahead of gossip
            raise RequestError(
                ErrorCode.NOT_RECORDED,
                f"record {message.record_id.hex()[:16]} is not in this node's ledger yet: only"
                " its owner uploads it before then (a repair can come back once gossip"
                " brought it)",
            )
        if derive_record_id(sender, nonce) != message.record_id:
            self._refused_uploads.note("upload of a record it does not own", short_key(sender))
            raise RequestError(
                ErrorCode.BAD_REQUEST,
                "only a record's owner uploads it before the ledger knows it (no or a wrong"
                " owner nonce)",
            )

    def _ledger_manifest_hash(self, record_id: bytes) -> bytes | None:
        info = self._ledger_state().records.get(record_id)
        return None if info is None else info.manifest_hash

    def _reserve(self, message: StoreShards, sender: bytes) -> Reservation | None:
        """Charge a batch of an unrecorded record to its writer, or refuse it (UNAVAILABLE)
        when the writer's pending bytes would pass the cap. None: a recorded record
        (repair, a put the ledger already knows), never charged nor refused."""
        if self.recorded(message.record_id):
            return None
        size = sum(len(block) for block in message.blocks) + ROW_WEIGHT
        size += len(message.manifest) if message.manifest is not None else 0
        charge = self.pending.reserve(message.record_id, sender, size)
        if charge is not None:
            return charge
        writer = self.pending.writer_of(message.record_id) or sender
        held = self.pending.of(writer)
        self._capped.note(
            "shards of records the ledger does not know, over the writer's cap",
            who=short_key(writer),
            pending_bytes=held,
            cap=self.pending.cap,
        )
        raise RequestError(
            ErrorCode.UNAVAILABLE,
            f"pending bytes cap: the writer has {held} bytes of shards here for records the"
            f" ledger does not know (at most {self.pending.cap}); more are refused until"
            " those are recorded or collected",
        )

    def _store_blocks(
        self, message: StoreShards, sender: bytes
    ) -> tuple[Manifest | None, int, int]:
        """In a worker thread: check the batch (against the manifest if known), store it.
        Returns the manifest, the blocks stored and the weight added to holdings."""
        manifest = self._accept_manifest(message)
        limit = manifest.n if manifest is not None else 255
        if not 0 <= message.index < limit or message.first_segment < 0:
            raise RequestError(ErrorCode.BAD_REQUEST, f"shard index {message.index} out of range")
        last = message.first_segment + len(message.blocks)
        if manifest is not None and last > manifest.segment_count:
            raise RequestError(ErrorCode.BAD_REQUEST, "segments out of range for this record")
        raw = manifest.encode() if message.manifest is not None and manifest is not None else None
        blocks = message.blocks
        if manifest is None:
            digests = self.store.add_many(blocks)  # checked against the manifest at the end
        else:
            first = message.first_segment
            digests = [manifest.block_hash(first + at, message.index) for at in range(len(blocks))]
            self.store.put_many(list(zip(digests, blocks, strict=True)))  # fsyncs once per batch
        noted = [(digest, len(block)) for digest, block in zip(digests, blocks, strict=True)]
        record_id, index, now = message.record_id, message.index, self.clock_ms()
        if raw is None and (record_id, index) in self._begun:
            added = self.holdings.note_blocks(record_id, index, noted, now)
        else:  # the index's row and its first blocks: one commit
            added = self.holdings.arrived(record_id, raw, index, now, uploader=sender, blocks=noted)
            self._begun.add((record_id, index))
        return manifest, len(message.blocks), added

    def _accept_manifest(self, message: StoreShards) -> Manifest | None:
        """The manifest the batch is checked against: for a record in the ledger only the
        ledger's (a held one that differs, planted before, is replaced)."""
        known = self.manifest(message.record_id)
        expected = self._ledger_manifest_hash(message.record_id)
        if expected is not None and known is not None and known.digest() != expected:
            self._forget_manifest(message.record_id)
            known = None
        if message.manifest is None:
            if known is None and message.complete:
                raise RequestError(
                    ErrorCode.BAD_REQUEST, "a completing batch must carry the manifest"
                )
            if known is None and expected is not None:
                # Else any member could store unchecked blocks under any recorded id.
                raise RequestError(
                    ErrorCode.BAD_REQUEST,
                    "this node holds no manifest of the record: the batch must carry it",
                )
            return known
        try:
            manifest = Manifest.decode(message.manifest)
        except ManifestError as exc:
            raise RequestError(ErrorCode.BAD_REQUEST, f"bad manifest: {exc}") from None
        if manifest.record_id != message.record_id:
            raise RequestError(ErrorCode.BAD_REQUEST, "manifest is for another record")
        if expected is not None and manifest.digest() != expected:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "the manifest is not the one the ledger records"
            )
        if expected is not None and known is None and self.holdings.manifest(message.record_id):
            self.holdings.replace_manifest(message.record_id, manifest.encode())
        if known is not None and known != manifest:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "a different manifest is held for this record"
            )
        self._cache_manifest(manifest)
        return manifest

    def _finish(self, manifest: Manifest, index: int) -> tuple[bool, int]:
        """In a worker thread: complete the index if every block it names is held;
        (complete, weight added to holdings).

        Blocks already held for another record (content addressing shares
        them) are noted for this one too: they were verified against their
        hash when stored, and noting them keeps them while this record lives.
        """
        named = [
            (manifest.block_hash(segment, index), manifest.block_size(segment))
            for segment in range(manifest.segment_count)
        ]
        if manifest.shard_hasher is not shard_hash_v3:
            self._rename_early_blocks(manifest, index, {digest for digest, _ in named})
        # One transaction, one commit: the blocks are noted before the check (a block
        # another record frees meanwhile is then either kept or found missing); blocks
        # sent before the manifest was known that it does not name are no part of the
        # record and must not live as long as it does.
        complete, added, unreferenced = self.holdings.finish(
            manifest.record_id, index, named, self.clock_ms(), self.store.__contains__
        )
        for digest in unreferenced:
            self.store.delete(digest)
        return complete, added

    def _store_finishing(
        self,
        message: StoreShards,
        sender: bytes,
        challenge: tuple[bytes, tuple[int, ...]] | None,
    ) -> tuple[int, int, bool, tuple[bytes | None, ...]]:
        """In a worker thread: `_store_blocks`, then `_finish_proving` for a completing
        batch; (blocks stored, weight added, complete, proofs)."""
        whole = self._whole_index(message)
        if whole is not None:
            stored, added, complete = self._store_whole(whole, message, sender)
            if not complete or challenge is None:
                return stored, added, complete, ()
            return stored, added, complete, self._batch_proofs(message, *challenge)
        manifest, stored, added = self._store_blocks(message, sender)
        if not message.complete or manifest is None:
            return stored, added, False, ()
        complete, noted, proofs = self._finish_proving(manifest, message, challenge)
        return stored, added + noted, complete, proofs

    def _whole_index(self, message: StoreShards) -> Manifest | None:
        """The manifest, if this batch carries it and is every block of its index, and
        nothing of the index came before (a small record): then one commit does all."""
        if (
            not message.complete
            or message.manifest is None
            or message.first_segment != 0
            or (message.record_id, message.index) in self._begun
        ):
            return None
        manifest = self._accept_manifest(message)
        if (
            manifest is None
            or manifest.shard_hasher is not shard_hash_v3  # older names: see _finish
            or not 0 <= message.index < manifest.n
            or len(message.blocks) != manifest.segment_count
        ):
            return None
        return manifest

    def _store_whole(
        self, manifest: Manifest, message: StoreShards, sender: bytes
    ) -> tuple[int, int, bool]:
        """In a worker thread: store a whole index's blocks (all checked against the
        manifest, then written as one batch), then note and complete it in one commit;
        (blocks stored, weight added, complete)."""
        blocks = message.blocks
        digests = [manifest.block_hash(s, message.index) for s in range(len(blocks))]
        # put_many checks every block first: a lying one stores none (no blocks left
        # on disk without a holdings row, which nothing would charge or collect).
        self.store.put_many(list(zip(digests, blocks, strict=True)))
        noted = [(digest, len(block)) for digest, block in zip(digests, blocks, strict=True)]
        record_id, index = message.record_id, message.index
        complete, added, unreferenced = self.holdings.arrived_whole(
            record_id,
            manifest.encode(),
            index,
            self.clock_ms(),
            uploader=sender,
            blocks=noted,
            present=self.store.__contains__,
        )
        self._begun.add((record_id, index))
        for digest in unreferenced:
            self.store.delete(digest)
        return len(message.blocks), added, complete

    def _finish_proving(
        self,
        manifest: Manifest,
        message: StoreShards,
        challenge: tuple[bytes, tuple[int, ...]] | None,
    ) -> tuple[bool, int, tuple[bytes | None, ...]]:
        """In a worker thread: `_finish`, then (if complete) the batch's proofs."""
        complete, added = self._finish(manifest, message.index)
        if not complete or challenge is None:
            return complete, added, ()
        return complete, added, self._batch_proofs(message, *challenge)

    def _batch_proofs(
        self, message: StoreShards, nonce: bytes, segments: tuple[int, ...]
    ) -> tuple[bytes | None, ...]:
        """Keyed hashes of the batch's blocks of `segments` (None for a segment not in
        it: no disk read on a challenge's account). The blocks were checked against the
        manifest when stored, so they are the blocks kept."""
        first, blocks = message.first_segment, message.blocks
        return tuple(
            block_proof(nonce, blocks[segment - first])
            if first <= segment < first + len(blocks)
            else None
            for segment in segments
        )

    def _rename_early_blocks(self, manifest: Manifest, index: int, named: set[bytes]) -> None:
        """Blocks sent before their manifest got BLAKE3 names (ShardStore.add); one of
        version 1 or 2 names them by BLAKE2b: rename, drop the rest (hashed once only)."""
        strays = [d for d in self.holdings.noted(manifest.record_id, index) if d not in named]
        if not strays:
            return
        for digest in strays:
            try:
                block = self.store.get(digest)
                name = manifest.shard_hasher(block)
                if name in named and name not in self.store:
                    self.store.put(name, block)
            except (ShardNotFound, CorruptShard, StoreFull):
                continue  # the index stays incomplete; the writer sees that
        for digest in self.holdings.keep_only(manifest.record_id, index, named):
            self.store.delete(digest)

    async def _on_fetch(self, message: FetchBlocks, caller: Caller) -> BlocksFound:
        return await self.serve_fetch(message, caller)

    async def serve_fetch(self, message: FetchBlocks, caller: Caller) -> BlocksFound:
        """A FetchBlocks answered (also for FetchHeld, node.records.held): gate, read, witness."""
        manifest = self.manifest(message.record_id)
        if manifest is None:
            return BlocksFound(tuple(None for _ in message.wanted))
        caller_key = caller.remote_public_key
        statement = await self.gate.admit(message, manifest, caller_key)
        blocks, foreign = await in_worker(self._read_blocks, manifest, message)
        if foreign:
            self.gate.refused_foreign(caller_key, message.record_id, foreign)
        record = self._ledger_state().records.get(message.record_id)
        served = any(block is not None for block in blocks)
        if statement is not None and served and record is not None and self.witness is not None:
            assert message.permit is not None
            self.witness(statement, message.permit, record.owner)
        return BlocksFound(blocks)

    def _demote_on_read(self, record_id: bytes, index: int) -> None:
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

    def _read_blocks(
        self, manifest: Manifest, message: FetchBlocks
    ) -> tuple[tuple[bytes | None, ...], int]:
        """In a worker thread: the wanted blocks (None where not served), and how many
        were refused as another record's (noted first for it: see Holdings.first_noted)."""
        out: list[bytes | None] = []
        budget = MAX_FETCH_BYTES
        wanted = [
            ref
            for ref in message.wanted
            if 0 <= ref.segment < manifest.segment_count and ref.index < manifest.n
        ]
        first = self.holdings.first_noted(
            manifest.block_hash(ref.segment, ref.index) for ref in wanted
        )
        foreign = 0
        for ref in message.wanted:
            if budget <= 0 or not (
                0 <= ref.segment < manifest.segment_count and ref.index < manifest.n
            ):
                out.append(None)
                continue
            digest = manifest.block_hash(ref.segment, ref.index)
            if first.get(digest, manifest.record_id) != manifest.record_id:
                foreign += 1
                out.append(None)
                continue
            try:
                block = self.store.get(digest)
            except (ShardNotFound, CorruptShard):
                # Lost, or quarantined by the store: the index is no longer held whole,
                # and repair will rebuild it (a no-op for an index this node never had).
                self._demote_on_read(manifest.record_id, ref.index)
                out.append(None)
                continue
            if len(block) > budget and budget < MAX_FETCH_BYTES:
                out.append(None)  # the answer must fit one message: ask again for the rest
                budget = 0
                continue
            budget -= len(block)
            out.append(block)
        return tuple(out), foreign

    async def holder_proof(
        self, manifest: Manifest, server: bytes, bucket: int
    ) -> HolderProof | None:
        """This node's block of a complete index at the segment `server` asks in
        `bucket` (protocol.records.holder_proof); None if no complete index has it."""
        segment = proof_segment(server, manifest.record_id, manifest.segment_count, bucket)
        for index in self.holdings.indices(manifest.record_id)[0]:
            try:
                block = await in_worker(self.store.get, manifest.block_hash(segment, index))
            except (ShardNotFound, CorruptShard):
                continue
            return HolderProof(index, segment, block)
        return None

    def _may_challenge(self, record_id: bytes, index: int, sender: bytes) -> None:
        self._challengers[(record_id, index)] = sender
        self._challengers.move_to_end((record_id, index))
        while len(self._challengers) > MAX_CHALLENGERS:
            self._challengers.popitem(last=False)

    async def _on_prove(self, message: ProveShards, caller: Caller) -> ShardsProven:
        """Keyed hashes of the named blocks: only a node keeping the blocks can answer."""
        if len(message.nonce) != NONCE_SIZE:
            raise RequestError(ErrorCode.BAD_REQUEST, f"a proof nonce is {NONCE_SIZE} bytes")
        # Only the node that just completed this index here challenges it, once: a proof
        # reads up to MAX_PROOF_SEGMENTS blocks, so anyone else's would be disk work for
        # the asking (audits by others fetch a block, under the read rules).
        key = (message.record_id, message.index)
        if self._challengers.get(key) != caller.remote_public_key:
            self._refused_uploads.note(
                "storage proof asked by a node that did not send the shard",
                short_key(caller.remote_public_key),
            )
            raise RequestError(
                ErrorCode.BAD_REQUEST,
                "only the node that sent this shard index asks for its proof, once",
            )
        del self._challengers[key]
        manifest = self.manifest(message.record_id)
        if manifest is None or not 0 <= message.index < manifest.n:
            return ShardsProven(tuple(None for _ in message.segments))
        return ShardsProven(await in_worker(self._prove, manifest, message))

    def _prove(self, manifest: Manifest, message: ProveShards) -> tuple[bytes | None, ...]:
        """In a worker thread: read (and so verify) each named block, hash it under the nonce."""
        out: list[bytes | None] = []
        for segment in message.segments:
            if not 0 <= segment < manifest.segment_count:
                out.append(None)
                continue
            try:
                block = self.store.get(manifest.block_hash(segment, message.index))
            except (ShardNotFound, CorruptShard):
                self._demote_on_read(manifest.record_id, message.index)
                out.append(None)
                continue
            out.append(block_proof(message.nonce, block))
        return tuple(out)

    async def _on_drop(self, message: DropShards, caller: Caller) -> ShardsDropped:
        """The uploader of a record the ledger does not know takes back what it sent."""
        record_id = message.record_id
        if self.recorded(record_id):
            raise RequestError(
                ErrorCode.BAD_REQUEST,
                "the record is in the ledger: only its owner's tombstone deletes it",
            )
        uploader = self.holdings.uploader(record_id)
        if uploader is not None and uploader != caller.remote_public_key:
            raise RequestError(ErrorCode.BAD_REQUEST, "only a record's uploader may drop it")
        # Remembered even when nothing arrived yet: batches still in flight are refused.
        # (A record id is unpredictable before its upload starts, so nobody else's
        # upload can be refused this way.)
        self._dropped[(record_id, caller.remote_public_key)] = None
        while len(self._dropped) > MAX_DROPPED:
            self._dropped.popitem(last=False)
        if uploader is None:
            return ShardsDropped(0)
        return ShardsDropped(await self.delete_record(record_id))

    async def _on_manifest(self, message: GetManifest, caller: Caller) -> ManifestFound:
        return ManifestFound(self.holdings.manifest(message.record_id))

    async def _on_holdings(self, message: GetHoldings, caller: Caller) -> HoldingsFound:
        complete, partial = self.holdings.indices(message.record_id)
        corrupt: list[int] = []
        manifest = self.manifest(message.record_id)
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
        while len(self._verified) > MAX_CHALLENGERS:
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

    # -- local -------------------------------------------------------------------

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
        self._forget_manifest(record_id)
        self._begun = {key for key in self._begun if key[0] != record_id}
        return sum(self.store.delete(digest) for digest in free)

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
        for digest in self.holdings.remove_index(record_id, index):
            self.store.delete(digest)
        self._begun.discard((record_id, index))


def _weight(manifest: Manifest) -> int:
    """About what a decoded manifest holds: its block hashes and sealed metadata."""
    return 32 * manifest.n * manifest.segment_count + len(manifest.sealed_metadata) + 256
