"""Serving reads of held blocks: FetchBlocks (and FetchHeld's blocks), GetManifest,
holder proofs.

Every read passes the read gate (the reader's permit against this node's
ledger), is bounded to one message's worth of blocks, and is told to the
witness when served under an access statement, so the read reaches the
ledger even if the reader's node does not log it. A block found lost or
corrupt while reading demotes its index (node.records.scrub).
"""

from __future__ import annotations

from collections.abc import Callable

from node.net.dispatch import Dispatcher
from node.net.rpc_port import Caller
from node.offload import in_worker
from node.records.manifests import ManifestCache
from node.records.read_gate import ReadGate
from node.records.scrub import Scrubber
from node.records.witness import Witness
from protocol.ledger.state import LedgerState
from protocol.records.holder_proof import proof_segment
from protocol.records.messages import (
    BlocksFound,
    FetchBlocks,
    GetManifest,
    HolderProof,
    ManifestFound,
)
from storage.codec.manifest import Manifest
from storage.errors import CorruptShard, ShardNotFound
from storage.store.holdings import Holdings
from storage.store.shard_store import ShardStore
from storage.store.sqlite import DatabaseBusy

MAX_FETCH_BYTES = 3 * 1024 * 1024


# At most this much is read and hashed on the event loop for one request (a 1 MiB
# record's index at k=3 is ~350 KB): more goes to a worker thread, so one request
# holds the loop for well under a millisecond.
INLINE_READ_BYTES = 512 * 1024


def _bytes_asked(manifest: Manifest, message: FetchBlocks) -> int:
    return sum(
        manifest.block_size(ref.segment)
        for ref in message.wanted
        if 0 <= ref.segment < manifest.segment_count
    )


class _NotCached(Exception):
    """An inline read met a block it cannot serve from the page cache: read in a worker."""


class BlockServer:
    def __init__(
        self,
        *,
        store: ShardStore,
        holdings: Holdings,
        manifests: ManifestCache,
        gate: ReadGate,
        ledger_state: Callable[[], LedgerState],
        witness: Witness | None,
        scrubber: Scrubber,
    ) -> None:
        self.store = store
        self.holdings = holdings
        self.manifests = manifests
        self.gate = gate
        self._ledger_state = ledger_state
        self.witness = witness  # told of each read served under an access statement
        self.scrubber = scrubber  # told of blocks found lost or corrupt

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(FetchBlocks, self._on_fetch)
        dispatcher.route(GetManifest, self._on_manifest)

    async def _on_fetch(self, message: FetchBlocks, caller: Caller) -> BlocksFound:
        return await self.serve_fetch(message, caller)

    async def serve_fetch(
        self, message: FetchBlocks, caller: Caller, inline: bool = False
    ) -> BlocksFound:
        """A FetchBlocks answered (also for FetchHeld, node.records.held): gate, read, witness.

        `inline` reads on the trio thread: for a request its caller bounds to one small
        index (FetchHeld, at most HELD_MAX_BYTES), where the worker thread's hand-off
        cost more than the read itself (docs/throughput.md, issue 17 round 3). Only from
        the page cache: a block that would wait for the disk, or is missing or damaged,
        sends the whole read to a worker thread, which decides (quarantine, demotion)."""
        manifest = self.manifests.get(message.record_id)
        if manifest is None:
            return BlocksFound(tuple(None for _ in message.wanted))
        caller_key = caller.remote_public_key
        statement = await self.gate.admit(message, manifest, caller_key)
        inline = inline and _bytes_asked(manifest, message) <= INLINE_READ_BYTES
        read = self._read_inline(manifest, message) if inline else None
        if read is None:
            read = await in_worker(self._read_blocks, manifest, message)
        blocks, foreign = read
        if foreign:
            self.gate.refused_foreign(caller_key, message.record_id, foreign)
        record = self._ledger_state().records.get(message.record_id)
        served = any(block is not None for block in blocks)
        if statement is not None and served and record is not None and self.witness is not None:
            assert message.permit is not None
            self.witness(statement, message.permit, record.owner)
        return BlocksFound(blocks)

    def _read_blocks(
        self, manifest: Manifest, message: FetchBlocks, *, cached_only: bool = False
    ) -> tuple[tuple[bytes | None, ...], int]:
        """In a worker thread: the wanted blocks (None where not served), and how many
        were refused as another record's (noted first for it: see Holdings.first_noted).
        `cached_only` (on the trio thread): _NotCached unless every block read comes
        whole and sound from the page cache and no database is busy, before anything is
        written."""
        out: list[bytes | None] = []
        budget = MAX_FETCH_BYTES
        wanted = [
            ref
            for ref in message.wanted
            if 0 <= ref.segment < manifest.segment_count and ref.index < manifest.n
        ]
        try:
            first = self.holdings.first_noted(
                (manifest.block_hash(ref.segment, ref.index) for ref in wanted),
                wait=not cached_only,
            )
        except DatabaseBusy:  # a commit holds the holdings: the loop does not wait for it
            raise _NotCached from None
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
                block = self._read_one(digest, cached_only)
            except (ShardNotFound, CorruptShard):
                # Lost, or quarantined by the store: the index is no longer held whole,
                # and repair will rebuild it (a no-op for an index this node never had).
                self.scrubber.demote_on_read(manifest.record_id, ref.index)
                out.append(None)
                continue
            if len(block) > budget and budget < MAX_FETCH_BYTES:
                out.append(None)  # the answer must fit one message: ask again for the rest
                budget = 0
                continue
            budget -= len(block)
            out.append(block)
        return tuple(out), foreign

    def _read_inline(
        self, manifest: Manifest, message: FetchBlocks
    ) -> tuple[tuple[bytes | None, ...], int] | None:
        """`_read_blocks` from the page cache only, or None (then read in a worker)."""
        try:
            return self._read_blocks(manifest, message, cached_only=True)
        except _NotCached:
            return None

    def _read_one(self, digest: bytes, cached_only: bool) -> bytes:
        if not cached_only:
            return self.store.get(digest)
        block = self.store.get_cached(digest)
        if block is None:
            raise _NotCached
        return block

    async def _on_manifest(self, message: GetManifest, caller: Caller) -> ManifestFound:
        return ManifestFound(self.holdings.manifest(message.record_id))

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
