"""RPCs between nodes for shard blocks and manifests.

A record's blocks travel per shard index: the putting node (or a repairer)
sends index i's blocks to its holder in batches of consecutive segments,
the manifest with the first batch, `complete` with the last. Readers fetch
blocks by (segment, index) from any holder, showing a read permit or a
holder proof, and verify them against the manifest, whose hash the ledger
holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocol.net.messages import Message, register
from protocol.records.proofs import PROOF_V1, PROOF_V2
from protocol.schema import BytesView, MaxItems

MAX_SITE_LENGTH = 64
# List caps, checked before any item is decoded (protocol.schema.MaxItems).
MAX_BATCH_BLOCKS = 16_384  # blocks in one StoreShards (senders split before this)
MAX_FETCH_REFS = 4096  # blocks asked in one FetchBlocks (readers split before this)
MAX_INDICES = 256  # shard indices of one record (n <= 255)
MAX_PROOF_SEGMENTS = 64  # segments one ProveShards names (protocol.records.proofs)


@register
@dataclass(frozen=True)
class GetNodeInfo(Message):
    TYPE: ClassVar[str] = "get_node_info"


@register
@dataclass(frozen=True)
class NodeInfo(Message):
    """The answering node's site label and free shard space."""

    TYPE: ClassVar[str] = "node_info"
    site: str
    free_bytes: int

    def __post_init__(self) -> None:
        if not 0 < len(self.site) <= MAX_SITE_LENGTH or self.free_bytes < 0:
            raise ValueError("a site label is 1..64 characters and free space >= 0")


@register
@dataclass(frozen=True)
class StoreShards(Message):
    """Blocks of shard `index` for segments first_segment, first_segment+1, ...

    For a record in the ledger, the holder takes only the ledger's manifest (a
    batch to a holder without it must carry it); for one not yet in the ledger,
    only batches from its owner (`owner_nonce`).
    """

    TYPE: ClassVar[str] = "store_shards"
    record_id: bytes
    manifest: bytes | None
    index: int
    first_segment: int
    # Views into the received message on a holder (no copy per block), bytes elsewhere.
    blocks: Annotated[tuple[BytesView, ...], MaxItems(MAX_BATCH_BLOCKS)]
    complete: bool
    # A record the ledger does not know yet is uploaded only by its owner: the nonce
    # its id was derived from proves the sender owns it (None: a recorded record).
    owner_nonce: bytes | None = None


@register
@dataclass(frozen=True)
class ShardsStored(Message):
    TYPE: ClassVar[str] = "shards_stored"
    stored: int
    complete: bool


@register
@dataclass(frozen=True)
class DropShards(Message):
    """A writer whose put failed or was interrupted: drop what I sent of this record.

    Honoured only for the record's uploader (the first sender of its blocks)
    and only while the ledger does not know the record.
    """

    TYPE: ClassVar[str] = "drop_shards"
    record_id: bytes


@register
@dataclass(frozen=True)
class ShardsDropped(Message):
    TYPE: ClassVar[str] = "shards_dropped"
    blocks: int


@dataclass(frozen=True)
class BlockRef:
    """One (segment, shard index) pair (a part of FetchBlocks)."""

    segment: int
    index: int

    def __post_init__(self) -> None:
        if self.segment < 0 or not 0 <= self.index < 256:
            raise ValueError("a block reference needs segment >= 0 and 0 <= index < 256")


@dataclass(frozen=True)
class HolderProof:
    """A repairer's own block of `index` at the segment the serving holder picks
    (protocol.records.holder_proof): it holds a complete index of the record."""

    index: int
    segment: int
    block: bytes

    def __post_init__(self) -> None:
        if self.segment < 0 or not 0 <= self.index < 256:
            raise ValueError("a holder proof needs segment >= 0 and 0 <= index < 256")


@register
@dataclass(frozen=True)
class FetchBlocks(Message):
    """Blocks of a record, served only with a `permit` (protocol.records.permit) whose
    reader may read the record, or a `proof` that the caller holds an index of it."""

    TYPE: ClassVar[str] = "fetch_blocks"
    record_id: bytes
    wanted: Annotated[tuple[BlockRef, ...], MaxItems(MAX_FETCH_REFS)]
    permit: bytes | None = None
    proof: HolderProof | None = None


@register
@dataclass(frozen=True)
class BlocksFound(Message):
    """One entry per wanted block, in order; None where this node lacks it."""

    TYPE: ClassVar[str] = "blocks_found"
    blocks: Annotated[tuple[bytes | None, ...], MaxItems(MAX_FETCH_REFS)]


@register
@dataclass(frozen=True)
class GetManifest(Message):
    TYPE: ClassVar[str] = "get_manifest"
    record_id: bytes


@register
@dataclass(frozen=True)
class ManifestFound(Message):
    TYPE: ClassVar[str] = "manifest_found"
    manifest: bytes | None


@register
@dataclass(frozen=True)
class GetHoldings(Message):
    TYPE: ClassVar[str] = "get_holdings"
    record_id: bytes
    verify: bool


@register
@dataclass(frozen=True)
class HoldingsFound(Message):
    """Shard indices held complete and partly; with verify, indices with corrupt blocks."""

    TYPE: ClassVar[str] = "holdings_found"
    complete: Annotated[tuple[int, ...], MaxItems(MAX_INDICES)]
    partial: Annotated[tuple[int, ...], MaxItems(MAX_INDICES)]
    corrupt: Annotated[tuple[int, ...], MaxItems(MAX_INDICES)]


@register
@dataclass(frozen=True)
class ProveShards(Message):
    """Show you keep index `index`'s blocks of these segments: their keyed hashes under
    `nonce` (protocol.records.proofs), one per segment, in order."""

    TYPE: ClassVar[str] = "prove_shards"
    PROOF: ClassVar[int] = PROOF_V1  # the proof version asked
    record_id: bytes
    index: int
    nonce: bytes
    segments: Annotated[tuple[int, ...], MaxItems(MAX_PROOF_SEGMENTS)]


@register
@dataclass(frozen=True)
class ShardsProven(Message):
    """One proof per segment asked; None where this node lacks the block."""

    TYPE: ClassVar[str] = "shards_proven"
    proofs: Annotated[tuple[bytes | None, ...], MaxItems(MAX_PROOF_SEGMENTS)]


@register
@dataclass(frozen=True)
class StoreAndProve(Message):
    """A StoreShards that completes an index sent in this one batch, with its storage
    challenge (ProveShards' `nonce` and `segments`): the holder answers ShardsStoredProven
    once the blocks are on disk. For an index whose blocks all travel in one batch, a
    challenge sent with them proves what one sent a round trip later proves (the
    holder has the batch in memory either way); a node that does not know this type
    answers UNKNOWN_TYPE and the writer sends StoreShards, then ProveShards."""

    TYPE: ClassVar[str] = "store_and_prove"
    PROOF: ClassVar[int] = PROOF_V1  # the proof version asked
    record_id: bytes
    manifest: bytes | None
    index: int
    first_segment: int
    blocks: Annotated[tuple[BytesView, ...], MaxItems(MAX_BATCH_BLOCKS)]
    owner_nonce: bytes | None
    nonce: bytes
    segments: Annotated[tuple[int, ...], MaxItems(MAX_PROOF_SEGMENTS)]

    def as_store(self) -> StoreShards:
        """The store part: a completing StoreShards."""
        return StoreShards(
            self.record_id,
            self.manifest,
            self.index,
            self.first_segment,
            self.blocks,
            True,
            self.owner_nonce,
        )


@register
@dataclass(frozen=True)
class StoreAndProveV2(StoreAndProve):
    """StoreAndProve answered with version 2 proofs (keyed BLAKE3,
    protocol.records.proofs); a node that does not know it answers UNKNOWN_TYPE and
    the writer asks StoreAndProve."""

    TYPE: ClassVar[str] = "store_and_prove_v2"
    PROOF: ClassVar[int] = PROOF_V2


@register
@dataclass(frozen=True)
class ProveShardsV2(ProveShards):
    """ProveShards answered with version 2 proofs (keyed BLAKE3); a node that does not
    know it answers UNKNOWN_TYPE and the writer asks ProveShards."""

    TYPE: ClassVar[str] = "prove_shards_v2"
    PROOF: ClassVar[int] = PROOF_V2


MAX_HELD_SEGMENTS = 64  # blocks one HeldFound carries (a small record's one index)


@register
@dataclass(frozen=True)
class FetchHeld(Message):
    """GetHoldings and FetchBlocks in one round, for a small record (protocol.records.held):
    which indices the holder keeps and, under a `permit` its ledger accepts, every block
    of one of them. An older node answers unknown_type: the reader asks as before."""

    TYPE: ClassVar[str] = "fetch_held"
    record_id: bytes
    permit: bytes


@register
@dataclass(frozen=True)
class ShardsStoredProven(Message):
    """ShardsStored and, when the index is complete, one proof per segment asked
    (None where the segment's block was not in the batch); no proofs otherwise."""

    TYPE: ClassVar[str] = "shards_stored_proven"
    stored: int
    complete: bool
    proofs: Annotated[tuple[bytes | None, ...], MaxItems(MAX_PROOF_SEGMENTS)]


@register
@dataclass(frozen=True)
class HeldFound(Message):
    """The holder's indices (as HoldingsFound) and the blocks of `index`, one per segment
    in order (None where lacking); no index and no blocks when it serves none."""

    TYPE: ClassVar[str] = "held_found"
    complete: Annotated[tuple[int, ...], MaxItems(MAX_INDICES)]
    partial: Annotated[tuple[int, ...], MaxItems(MAX_INDICES)]
    index: int | None
    blocks: Annotated[tuple[bytes | None, ...], MaxItems(MAX_HELD_SEGMENTS)]
