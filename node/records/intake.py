"""Storing the batches of shard blocks that arrive here (StoreShards, StoreAndProve).

Blocks arrive per shard index in batches. The shard store is
content-addressed, so blocks can be kept before the record's manifest is
known (a streaming put sends it with the last batch); once it is, every block
is checked against it, and an index counts as held only when every
segment's block of it is stored (the node announces itself as a provider
once the record is also recorded: node.records.announcing). A completing
StoreAndProve batch is proved from its own blocks in the same thread hop.
Who may send a batch, and how much, is node.records.uploads'.
Disk and hashing work runs in worker threads.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

from node.logs import event, get_logger
from node.net.dispatch import Dispatcher
from node.net.errors import RequestError
from node.net.rpc_port import Caller
from node.offload import in_worker
from node.records.announcing import Announcements
from node.records.block_refs import BlockRefs
from node.records.manifests import ManifestCache
from node.records.proving import Challenges, check_nonce
from node.records.uploads import DROPPED, Uploads
from protocol.ledger.state import LedgerState
from protocol.net.messages import ErrorCode
from protocol.records.messages import (
    ShardsStored,
    ShardsStoredProven,
    StoreAndProve,
    StoreAndProveV2,
    StoreShards,
)
from protocol.records.proofs import block_proof
from storage.codec.hashing import shard_hash_v3
from storage.codec.manifest import Manifest
from storage.errors import BlockMismatch, CorruptShard, ManifestError, ShardNotFound, StoreFull
from storage.store.holdings import Holdings
from storage.store.shard_store import ShardStore

log = get_logger("shards")

Challenge = tuple[
    bytes, tuple[int, ...], int
]  # (nonce, segments, proof version) of a StoreAndProve


class ShardIntake:
    def __init__(
        self,
        *,
        store: ShardStore,
        holdings: Holdings,
        manifests: ManifestCache,
        uploads: Uploads,
        challenges: Challenges,
        announcements: Announcements,
        ledger_state: Callable[[], LedgerState],
        clock_ms: Callable[[], int],
        delete_record: Callable[[bytes], Awaitable[int]],
        begun: set[tuple[bytes, int]],
        refs: BlockRefs,
        stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.holdings = holdings
        self.manifests = manifests
        self.uploads = uploads
        self.challenges = challenges
        self.announcements = announcements
        self._ledger_state = ledger_state
        self.clock_ms = clock_ms
        self.delete_record = delete_record
        # (record, index) whose holdings row exists: later batches only note their blocks
        # (shared with node.records.removal, which forgets what it deletes).
        self._begun = begun
        self.refs = refs  # storing-and-noting against freeing (node.records.block_refs)
        self._stored = stored  # a batch was written (node.records.spares refills)

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(StoreShards, self._on_store)
        dispatcher.route(StoreAndProve, self._on_store_and_prove)
        dispatcher.route(StoreAndProveV2, self._on_store_and_prove)

    async def _on_store(self, message: StoreShards, caller: Caller) -> ShardsStored:
        stored, complete, _ = await self._store_batch(message, caller.remote_public_key, None)
        return ShardsStored(stored, complete)

    async def _on_store_and_prove(
        self, message: StoreAndProve, caller: Caller
    ) -> ShardsStoredProven:
        """A completing batch with its storage challenge: the proofs are keyed hashes of
        the batch's own blocks (checked against the manifest and on disk first), so a
        challenge costs at most one hash per block the sender just paid to send."""
        check_nonce(message.nonce)
        segments = message.segments
        if not segments or any(b <= a for a, b in itertools.pairwise(segments)):
            raise RequestError(
                ErrorCode.BAD_REQUEST, "a challenge names segments in increasing order"
            )
        challenge = (message.nonce, segments, message.PROOF)
        stored, complete, proofs = await self._store_batch(
            message.as_store(), caller.remote_public_key, challenge
        )
        return ShardsStoredProven(stored, complete, proofs)

    async def _store_batch(
        self, message: StoreShards, sender: bytes, challenge: Challenge | None
    ) -> tuple[int, bool, tuple[bytes | None, ...]]:
        """Store a batch, complete its index if it says so; (blocks stored, complete,
        proofs of the batch's blocks under `challenge` once complete)."""
        record_id = message.record_id
        charge = self.uploads.admit(message, sender)
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
            self._stored()
            stored, added, complete, proofs = outcome
            if self.uploads.dropped(record_id, sender):
                # dropped while this batch was being written
                keep = False
                await self.delete_record(record_id)
                raise RequestError(ErrorCode.BAD_REQUEST, DROPPED)
            if complete:
                if challenge is None:  # else the challenge came with the batch
                    self.challenges.may_challenge(record_id, message.index, sender)
                self.announcements.held(record_id)
                event(
                    log,
                    logging.INFO,
                    "shard held",
                    record=record_id.hex()[:16],
                    index=message.index,
                )
        finally:
            self.uploads.settle(charge, record_id, added, keep)
        return stored, complete, proofs

    def _ledger_manifest_hash(self, record_id: bytes) -> bytes | None:
        info = self._ledger_state().records.get(record_id)
        return None if info is None else info.manifest_hash

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
        record_id, index = message.record_id, message.index
        with self.refs.noting():  # a block found already held is noted before any free
            if manifest is None:
                digests = self.store.add_many(blocks)  # checked against the manifest at the end
            else:
                first = message.first_segment
                digests = [manifest.block_hash(first + at, index) for at in range(len(blocks))]
                self.store.put_many(list(zip(digests, blocks, strict=True)))  # one fsync'd pack
            noted = [(digest, len(block)) for digest, block in zip(digests, blocks, strict=True)]
            now = self.clock_ms()
            if raw is None and (record_id, index) in self._begun:
                added = self.holdings.note_blocks(record_id, index, noted, now)
            else:  # the index's row and its first blocks: one commit
                added = self.holdings.arrived(
                    record_id, raw, index, now, uploader=sender, blocks=noted
                )
                self._begun.add((record_id, index))
        return manifest, len(message.blocks), added

    def _accept_manifest(self, message: StoreShards) -> Manifest | None:
        """The manifest the batch is checked against: for a record in the ledger only the
        ledger's (a held one that differs, planted before, is replaced)."""
        known = self.manifests.get(message.record_id)
        expected = self._ledger_manifest_hash(message.record_id)
        if expected is not None and known is not None and known.digest() != expected:
            self.manifests.forget(message.record_id)
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
        self.manifests.keep(manifest)
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
        names = {digest for digest, _ in named}
        # One transaction, one commit: the blocks are noted before the check (a block
        # another record frees meanwhile is then either kept or found missing); blocks
        # sent before the manifest was known that it does not name are no part of the
        # record and must not live as long as it does. A block renamed for an older
        # manifest is stored and noted in one section (else a free, the start-up
        # sweep's, could take it in between).
        with self.refs.noting():
            renamed = manifest.shard_hasher is not shard_hash_v3
            if renamed:
                self._rename_early_blocks(manifest, index, names)
            complete, added, unreferenced = self.holdings.finish(
                manifest.record_id, index, named, self.clock_ms(), self.store.__contains__
            )
            if renamed and not complete:  # else finish un-noted them
                unreferenced += self.holdings.keep_only(manifest.record_id, index, names)
        self.refs.free(unreferenced)
        return complete, added

    def _store_finishing(
        self,
        message: StoreShards,
        sender: bytes,
        challenge: Challenge | None,
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
        noted = [(digest, len(block)) for digest, block in zip(digests, blocks, strict=True)]
        record_id, index = message.record_id, message.index
        with self.refs.noting():
            self.store.put_many(list(zip(digests, blocks, strict=True)))
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
        self.refs.free(unreferenced)
        return len(message.blocks), added, complete

    def _finish_proving(
        self,
        manifest: Manifest,
        message: StoreShards,
        challenge: Challenge | None,
    ) -> tuple[bool, int, tuple[bytes | None, ...]]:
        """In a worker thread: `_finish`, then (if complete) the batch's proofs."""
        complete, added = self._finish(manifest, message.index)
        if not complete or challenge is None:
            return complete, added, ()
        return complete, added, self._batch_proofs(message, *challenge)

    def _batch_proofs(
        self, message: StoreShards, nonce: bytes, segments: tuple[int, ...], version: int
    ) -> tuple[bytes | None, ...]:
        """Keyed hashes of the batch's blocks of `segments` (None for a segment not in
        it: no disk read on a challenge's account). The blocks were checked against the
        manifest when stored, so they are the blocks kept."""
        first, blocks = message.first_segment, message.blocks
        return tuple(
            block_proof(nonce, blocks[segment - first], version)
            if first <= segment < first + len(blocks)
            else None
            for segment in segments
        )

    def _rename_early_blocks(self, manifest: Manifest, index: int, named: set[bytes]) -> None:
        """Blocks sent before their manifest got BLAKE3 names (ShardStore.add); one of
        version 1 or 2 names them by BLAKE2b: store them under those (hashed once only);
        inside `noting`, with the note of the names (`_finish` drops the strays)."""
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
