"""What the daemon answers the CLI: one typed reply class per kind of answer.

Every reply is a frozen dataclass sent as a control frame [kind, body] and
decoded on the CLI's side with the same schema checks as a command, so the
CLI reads fields, not string keys of a map. A failure is an ErrorReply; a
download is a GetHeader, DataChunk frames, then Done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from protocol.control.frames import Registry
from protocol.ledger.trail import TrailRow
from protocol.records.health import RecordHealth


class ControlReply:
    """Base of the daemon's answers; subclasses are frozen dataclasses."""

    KIND: ClassVar[str] = ""


REPLIES = Registry[ControlReply]("reply", lambda cls: str(cls.KIND))
control_reply = REPLIES.register


def encode_reply(reply: ControlReply) -> bytes:
    return REPLIES.encode(reply)


def decode_reply(payload: bytes | bytearray | memoryview) -> ControlReply:
    return REPLIES.decode(payload)


@control_reply
@dataclass(frozen=True)
class ErrorReply(ControlReply):
    KIND: ClassVar[str] = "error"
    error: str


@control_reply
@dataclass(frozen=True)
class Done(ControlReply):
    """The request succeeded and says nothing more (or a download ended)."""

    KIND: ClassVar[str] = "done"


@control_reply
@dataclass(frozen=True)
class StatusReply(ControlReply):
    KIND: ClassVar[str] = "status"
    public_key: bytes
    node_id: bytes
    address: str
    site: str
    uptime_s: float
    contacts: int
    connections: int
    ledger_entries: int
    records: int
    records_held: int
    store_used_bytes: int
    store_quota_bytes: int
    k: int
    n: int
    happy: int
    segment_size: int
    repair_passes: int
    orphan_pieces: int  # unrecorded uploads and never-completed indices held
    orphan_bytes: int  # what they weigh (`medvault gc` reclaims it)
    ledger_caught_up: bool  # peers showed nothing beyond this ledger (gc is safe)
    revoked_nodes: int  # node keys refused: revoked by an authority or in network.revoked
    erasure_codec: str = ""  # the Reed-Solomon backend in use ("isal (...)" or "numpy ...")


@control_reply
@dataclass(frozen=True)
class GcReply(ControlReply):
    KIND: ClassVar[str] = "gc"
    records: int  # unrecorded uploads deleted
    indices: int  # never-completed indices of known records deleted
    bytes_freed: int


@dataclass(frozen=True)
class PeerRow:
    public_key: bytes
    node_id: bytes
    address: str
    site: str | None
    reachable: bool


@control_reply
@dataclass(frozen=True)
class PeersReply(ControlReply):
    KIND: ClassVar[str] = "peers"
    peers: tuple[PeerRow, ...]


@control_reply
@dataclass(frozen=True)
class UploadReady(ControlReply):
    """Go ahead; streamed uploads send chunks of `chunk_size` bytes."""

    KIND: ClassVar[str] = "upload_ready"
    chunk_size: int


@control_reply
@dataclass(frozen=True)
class UploadProgress(ControlReply):
    """Bytes of an attached file the daemon has read so far."""

    KIND: ClassVar[str] = "upload_progress"
    done: int


@control_reply
@dataclass(frozen=True)
class PutReply(ControlReply):
    KIND: ClassVar[str] = "put"
    record_id: bytes
    size: int
    segments: int
    holders: int  # distinct nodes standing for distinct indices
    sites: int  # distinct sites among them
    degraded: bool  # recorded, but below n holders or too much on one site
    reasons: tuple[str, ...]  # why it is degraded
    grantees: tuple[bytes, ...]


@control_reply
@dataclass(frozen=True)
class GetHeader(ControlReply):
    """Before a download: as this node (filename, content type) or as a person (sealed)."""

    KIND: ClassVar[str] = "get"
    size: int
    segments: int
    filename: str | None = None
    content_type: str | None = None
    manifest: bytes | None = None  # when reading as a person: decryption happens in the CLI
    sealed_key: bytes | None = None


@control_reply
@dataclass(frozen=True)
class DataChunk(ControlReply):
    """One segment of a download: plaintext, or ciphertext for a person's CLI to open."""

    KIND: ClassVar[str] = "data"
    segment: int
    data: bytes


@dataclass(frozen=True)
class RecordRow:
    record_id: bytes
    owner: bytes
    size: int
    k: int
    n: int
    created_at: int
    grantees: tuple[bytes, ...]
    attested_by: tuple[bytes, ...]
    # Descriptive metadata, when the reader can open it: decrypted by the daemon
    # for itself; for a person, the sealed metadata and the person's sealed key
    # (the CLI opens them: a person's private key never reaches the daemon).
    filename: str | None = None
    content_type: str | None = None
    sealed_metadata: bytes | None = None
    sealed_key: bytes | None = None


@control_reply
@dataclass(frozen=True)
class Written(ControlReply):
    """The ledger entry a grant, revoke or delete wrote (the CLI decodes it)."""

    KIND: ClassVar[str] = "written"
    entry: bytes


@control_reply
@dataclass(frozen=True)
class RecordResolved(ControlReply):
    KIND: ClassVar[str] = "record_resolved"
    record_id: bytes


@control_reply
@dataclass(frozen=True)
class RecordsReply(ControlReply):
    KIND: ClassVar[str] = "records"
    records: tuple[RecordRow, ...]


@control_reply
@dataclass(frozen=True)
class NodeKeyReply(ControlReply):
    KIND: ClassVar[str] = "node_key"
    public_key: bytes


@control_reply
@dataclass(frozen=True)
class PeerCertificateReply(ControlReply):
    """The encoded certificate, or None: never met, forgotten, or an open network."""

    KIND: ClassVar[str] = "peer_certificate"
    certificate: bytes | None


@control_reply
@dataclass(frozen=True)
class FeedHeadReply(ControlReply):
    """Where a person's next ledger entry goes, and the record's manifest hash."""

    KIND: ClassVar[str] = "feed_head"
    seq: int
    prev: bytes
    manifest_hash: bytes
    next_index: int = 0  # the record's smallest free stealth grant index (for a share)


@control_reply
@dataclass(frozen=True)
class FeedResumed(ControlReply):
    KIND: ClassVar[str] = "feed_resumed"
    tip: bytes  # the entry the node's next write follows


@dataclass(frozen=True)
class StealthGrantRow:
    """One stealth grant as a wallet needs it: scan `grant` with the context
    record_id || index (2 bytes, big-endian); `author` is the granting node (or a
    co-owner's one-time key); `current`: counted, not revoked, not expired now."""

    position: int  # in this node's ledger order: the cursor after this row
    record_id: bytes
    index: int
    grant: bytes  # 114 bytes: protocol.privacy.StealthGrant
    expires_at: int
    patient: bool
    author: bytes
    timestamp: int  # the entry's time (ms)
    entry: bytes  # the entry's hash
    current: bool
    rejected: str | None  # why the ledger refused it, if it did
    size: int = 0  # the record's size as the ledger has it (0: record not known yet)


@control_reply
@dataclass(frozen=True)
class StealthGrantsReply(ControlReply):
    KIND: ClassVar[str] = "stealth_grants"
    rows: tuple[StealthGrantRow, ...]
    cursor: int  # ask again with after=cursor
    total: int  # stealth grants this node holds (a cursor beyond it: scan again from 0)


@dataclass(frozen=True)
class LedgerRow:
    raw: bytes  # the signed entry itself: the CLI decodes and verifies it
    rejected: str | None


@control_reply
@dataclass(frozen=True)
class LedgerReply(ControlReply):
    KIND: ClassVar[str] = "ledger"
    entries: tuple[LedgerRow, ...]


def _by_node(indices: Mapping[bytes, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {node.hex(): tuple(found) for node, found in indices.items()}


@dataclass(frozen=True)
class HealthReport:
    """A RecordHealth as the CLI sees it (nodes as hex keys)."""

    record_id: bytes
    k: int
    n: int
    holders: dict[str, tuple[int, ...]]
    distinct_hosts: int
    missing: tuple[int, ...]
    crowded: tuple[int, ...]
    partial: dict[str, tuple[int, ...]]
    corrupt: dict[str, tuple[int, ...]]
    readable: bool
    healthy: bool
    sites: dict[str, str]  # holder (hex) -> its site, where known
    network_sites: int  # sites the network is known to have
    site_losses: dict[str, int]  # site -> distinct indices left elsewhere if it is lost
    site_safe: bool  # losing any one site leaves it readable (or too few sites to ask it)
    unproven: dict[str, tuple[int, ...]]  # claimed by a holder that failed its audit
    unaudited: dict[str, tuple[int, ...]]  # counted unaudited: this node may not read it

    @classmethod
    def of(cls, health: RecordHealth) -> HealthReport:
        return cls(
            record_id=health.record_id,
            k=health.k,
            n=health.n,
            holders=_by_node(health.holders),
            distinct_hosts=health.distinct_hosts,
            missing=health.missing,
            crowded=health.crowded,
            partial=_by_node(health.partial),
            corrupt=_by_node(health.corrupt),
            readable=health.readable,
            healthy=health.healthy,
            sites={node.hex(): site for node, site in health.sites.items()},
            network_sites=health.network_sites,
            site_losses=health.site_losses,
            site_safe=health.site_safe,
            unproven=_by_node(health.unproven),
            unaudited=_by_node(health.unaudited),
        )


@dataclass(frozen=True)
class RepairOutcome:
    placed: dict[str, bytes]  # shard index (as text) -> its new holder
    copied: dict[str, bytes]  # shard index (as text) -> a holder on another site (site safety)
    failed: dict[str, str]  # node (hex) -> why
    note: str


@dataclass(frozen=True)
class CheckRow:
    health: HealthReport
    repair: RepairOutcome | None = None
    repair_error: str | None = None
    after: HealthReport | None = None


@control_reply
@dataclass(frozen=True)
class CheckReply(ControlReply):
    KIND: ClassVar[str] = "check"
    records: tuple[CheckRow, ...]


@control_reply
@dataclass(frozen=True)
class RevocationPublished(ControlReply):
    KIND: ClassVar[str] = "revocation_published"
    node_key: bytes
    new: bool  # False: the node was revoked already (nothing changed, nothing pushed)
    pushed_to: int  # connected peers it was pushed to (they push it on)


@dataclass(frozen=True)
class RevocationRow:
    node_key: bytes
    revoked_at: int  # ms; 0 for a key listed in network.revoked
    authority: bytes  # empty for a key listed in network.revoked
    source: str  # "authority" or "config"


@control_reply
@dataclass(frozen=True)
class RevocationsReply(ControlReply):
    KIND: ClassVar[str] = "revocations"
    revocations: tuple[RevocationRow, ...]


@dataclass(frozen=True)
class EmergencyOutcome:
    """What one record's owner answered an emergency request."""

    record_id: bytes
    owner: bytes
    status: str  # granted, queued, refused, unreachable
    code: str
    detail: str
    expires_at: int  # ms, when granted
    request_id: str  # when queued


@control_reply
@dataclass(frozen=True)
class EmergencyOutcomes(ControlReply):
    KIND: ClassVar[str] = "emergency_outcomes"
    rows: tuple[EmergencyOutcome, ...]


@dataclass(frozen=True)
class EmergencyRow:
    """One emergency access to this node's record, its reason opened by this node."""

    emergency: bytes  # the emergency entry's hash: its id
    record_id: bytes
    requester: bytes
    site: str | None
    reason: str
    expires_at: int
    granted_at: int  # the entry's time (ms, on the minute)
    signed_off_at: int  # 0: not signed off
    note: str | None


@control_reply
@dataclass(frozen=True)
class EmergencyReviewReply(ControlReply):
    KIND: ClassVar[str] = "emergency_review"
    rows: tuple[EmergencyRow, ...]


@dataclass(frozen=True)
class EmergencyPendingRow:
    request_id: str
    record_id: bytes
    requester: bytes
    site: str | None
    reason: str
    duration_ms: int
    asked_at: int


@control_reply
@dataclass(frozen=True)
class EmergencyPendingReply(ControlReply):
    KIND: ClassVar[str] = "emergency_pending"
    rows: tuple[EmergencyPendingRow, ...]


@control_reply
@dataclass(frozen=True)
class EmergencyDecided(ControlReply):
    KIND: ClassVar[str] = "emergency_decided"
    approved: bool
    expires_at: int  # when approved
    entries: tuple[bytes, ...]  # what an approval wrote


@control_reply
@dataclass(frozen=True)
class AuditReply(ControlReply):
    """A record's trail, earliest first; `hidden_reads`: reads the ledger holds but the
    state no longer shows (beyond the most recent MAX_ACCESSES_PER_RECORD)."""

    KIND: ClassVar[str] = "audit"
    record_id: bytes
    owner: bytes
    rows: tuple[TrailRow, ...]
    hidden_reads: int = 0
