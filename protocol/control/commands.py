"""What the `medvault` CLI asks its daemon: one typed command per connection.

It runs over the daemon's Unix socket (mode 0600 in the data directory), in
control frames (protocol.control.frames). The daemon answers with typed
replies (protocol.control.replies). Put's upload is Chunk frames ended by a
chunk with `last` set, unless the file itself is attached as a descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.control.frames import Registry
from protocol.records.purpose import Purpose

KEY_SIZE = 32
ADDRESS_SIZE = 66  # a person's stealth address (protocol.privacy.Address, encoded)
RECORD_ID_SIZE = 32
MAX_STEALTH_ROWS = 1000  # stealth grants one StealthGrants reply carries at most
MAX_PERMITS = 64  # read permits one Get may carry (each good for ten minutes)
MAX_PERMIT_SIZE = 256


class ControlRequest:
    """Base of the CLI's messages; subclasses are frozen dataclasses."""

    OP: ClassVar[str] = ""


COMMANDS = Registry[ControlRequest]("request", lambda cls: str(cls.OP))
control_op = COMMANDS.register


def _key(value: bytes | None, what: str, size: int = KEY_SIZE) -> None:
    if value is not None and len(value) != size:
        raise ValueError(f"{what} must be {size} bytes")


def _grantee(value: bytes | None, what: str) -> None:
    """A public key (32 bytes: an old-format grant) or an address (66: a stealth grant)."""
    if value is not None and len(value) not in {KEY_SIZE, ADDRESS_SIZE}:
        raise ValueError(f"{what} must be a {KEY_SIZE}-byte key or a {ADDRESS_SIZE}-byte address")


@control_op
@dataclass(frozen=True)
class Status(ControlRequest):
    OP: ClassVar[str] = "status"


@control_op
@dataclass(frozen=True)
class Peers(ControlRequest):
    OP: ClassVar[str] = "peers"


@control_op
@dataclass(frozen=True)
class Put(ControlRequest):
    """Start an upload.

    `attached`: the file itself came with this frame as a file descriptor
    (SCM_RIGHTS) and the daemon reads it; otherwise Chunk frames follow, the
    last one with `last` set. The daemon answers UploadReady first, then
    (attached) UploadProgress now and then, then a PutReply. `expires_at`
    applies to `grantees` only (the patient's grant never expires); `size`
    is the upload's size when known (0: unknown), for placement by free
    space; `require_full` refuses a degraded put. `patient` and `grantees` are
    public keys (old-format grants) or addresses (stealth grants; a patient's
    address makes her a co-owner of the record's sharing).
    """

    OP: ClassVar[str] = "put"
    content_type: str
    filename: str
    patient: bytes | None
    grantees: tuple[bytes, ...]
    expires_at: int
    attached: bool
    size: int = 0
    require_full: bool = False

    def __post_init__(self) -> None:
        _grantee(self.patient, "patient key")
        for grantee in self.grantees:
            _grantee(grantee, "grantee key")
        if self.expires_at < 0 or self.size < 0:
            raise ValueError("expires_at and size must be >= 0")


@control_op
@dataclass(frozen=True)
class Chunk(ControlRequest):
    OP: ClassVar[str] = "chunk"
    data: bytes
    last: bool


@control_op
@dataclass(frozen=True)
class NodeKey(ControlRequest):
    """This node's public key (a person's read permit names the node it reads through)."""

    OP: ClassVar[str] = "node_key"


@control_op
@dataclass(frozen=True)
class PeerCertificate(ControlRequest):
    """The last membership certificate this node saw (and verified) for a node key: a
    claim event carries its owner's, so `events verify --authority` proves the site."""

    OP: ClassVar[str] = "peer_certificate"
    node_key: bytes

    def __post_init__(self) -> None:
        _key(self.node_key, "node key")


@control_op
@dataclass(frozen=True)
class Get(ControlRequest):
    """Read a record: as this node (plaintext) or as `reader` (ciphertext + sealed key).

    A read as `reader` carries `permits` the reader signed in the CLI for this
    node (protocol.records.permit): holders serve blocks only for them.
    """

    OP: ClassVar[str] = "get"
    record_id: bytes
    reader: bytes | None
    permits: tuple[bytes, ...] = ()
    # A read as this node: its HL7 PurposeOfUse code (logged); None: the node chooses
    # (ETREAT under an emergency grant, else TREAT: protocol.emergency.purpose).
    purpose: str | None = None

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)
        _key(self.reader, "reader key")
        if len(self.permits) > MAX_PERMITS or any(len(p) > MAX_PERMIT_SIZE for p in self.permits):
            raise ValueError(f"at most {MAX_PERMITS} permits of {MAX_PERMIT_SIZE} bytes each")
        if self.purpose is not None and self.purpose not in Purpose.__members__:
            raise ValueError(f"unknown purpose of use {self.purpose[:16]!r}")


@control_op
@dataclass(frozen=True)
class ListRecords(ControlRequest):
    OP: ClassVar[str] = "ls"
    reader: bytes | None

    def __post_init__(self) -> None:
        _key(self.reader, "reader key")


@control_op
@dataclass(frozen=True)
class Grant(ControlRequest):
    """Grant a record this node owns to a public key, or to an address (a stealth grant;
    `patient`: the address co-owns the record's sharing, and the grant never expires)."""

    OP: ClassVar[str] = "grant"
    record_id: bytes
    grantee: bytes
    expires_at: int
    patient: bool = False

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)
        _grantee(self.grantee, "grantee key")
        if self.expires_at < 0:
            raise ValueError("expires_at must be >= 0")


@control_op
@dataclass(frozen=True)
class Revoke(ControlRequest):
    OP: ClassVar[str] = "revoke"
    record_id: bytes
    grantee: bytes

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)
        _key(self.grantee, "grantee key")


@control_op
@dataclass(frozen=True)
class Delete(ControlRequest):
    OP: ClassVar[str] = "delete"
    record_id: bytes

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)


@control_op
@dataclass(frozen=True)
class FeedHead(ControlRequest):
    """Where `author`'s next entry goes (seq, prev), and the record's manifest hash."""

    OP: ClassVar[str] = "feed_head"
    author: bytes
    record_id: bytes

    def __post_init__(self) -> None:
        _key(self.author, "author key")
        _key(self.record_id, "record id", RECORD_ID_SIZE)


@control_op
@dataclass(frozen=True)
class StealthGrants(ControlRequest):
    """The stealth grants this node holds after position `after` (0: from the first), at
    most `limit` (<= MAX_STEALTH_ROWS); `record_id`: only that record's. What a wallet
    scans with a view key; the reply's `cursor` is where to ask from next."""

    OP: ClassVar[str] = "stealth_grants"
    after: int
    limit: int = MAX_STEALTH_ROWS
    record_id: bytes | None = None

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)
        if self.after < 0 or not 1 <= self.limit <= MAX_STEALTH_ROWS:
            raise ValueError(f"after must be >= 0 and limit 1..{MAX_STEALTH_ROWS}")


@control_op
@dataclass(frozen=True)
class Submit(ControlRequest):
    """A ledger entry signed outside the daemon: by a person's key, or by a stealth
    grant's one-time key (a wallet's attest, share or revoke). The daemon checks it
    against its author's feed head (FeedHead) and the ledger's rules first."""

    OP: ClassVar[str] = "submit"
    entry: bytes


@control_op
@dataclass(frozen=True)
class Ledger(ControlRequest):
    OP: ClassVar[str] = "ledger"
    record_id: bytes | None
    tail: int

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)
        if self.tail < 0:
            raise ValueError("tail must be >= 0")


@control_op
@dataclass(frozen=True)
class Check(ControlRequest):
    """Health of one record; or (record_id None) of every record this node owns or
    holds, or with `network` of every record in the ledger."""

    OP: ClassVar[str] = "check"
    record_id: bytes | None
    repair: bool
    verify: bool
    network: bool = False

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)


@control_op
@dataclass(frozen=True)
class Gc(ControlRequest):
    """Delete what failed uploads left behind, if older than `older_than_s` seconds."""

    OP: ClassVar[str] = "gc"
    older_than_s: int

    def __post_init__(self) -> None:
        if self.older_than_s < 0:
            raise ValueError("older_than_s must be >= 0")


@control_op
@dataclass(frozen=True)
class ResumeFeed(ControlRequest):
    """Let the node's next write continue its forked own feed from one of its tips."""

    OP: ClassVar[str] = "resume_feed"


@control_op
@dataclass(frozen=True)
class ResolveRecord(ControlRequest):
    """The full id of the record whose id starts with `prefix` (8+ hex digits)."""

    OP: ClassVar[str] = "resolve_record"
    prefix: str

    def __post_init__(self) -> None:
        if len(self.prefix) > 64:
            raise ValueError("a record id prefix is at most 64 hex digits")


@control_op
@dataclass(frozen=True)
class PublishRevocation(ControlRequest):
    """Apply an authority's revocation of a node (protocol.membership.revocation,
    encoded) and gossip it to the network."""

    OP: ClassVar[str] = "publish_revocation"
    revocation: bytes

    def __post_init__(self) -> None:
        if len(self.revocation) > 1024:
            raise ValueError("a revocation is at most 1024 bytes")


@control_op
@dataclass(frozen=True)
class Revocations(ControlRequest):
    """The nodes this node refuses: revoked by an authority or in network.revoked."""

    OP: ClassVar[str] = "revocations"


MAX_EMERGENCY_RECORDS = 256  # records one emergency request names at most


@control_op
@dataclass(frozen=True)
class EmergencyRequest(ControlRequest):
    """Ask each record's owner node for break-glass access for this node (docs/emergency.md)."""

    OP: ClassVar[str] = "emergency_request"
    record_ids: tuple[bytes, ...]
    reason: str
    duration_ms: int

    def __post_init__(self) -> None:
        if not 0 < len(self.record_ids) <= MAX_EMERGENCY_RECORDS:
            raise ValueError(f"an emergency request names 1..{MAX_EMERGENCY_RECORDS} records")
        for record_id in self.record_ids:
            _key(record_id, "record id", RECORD_ID_SIZE)
        if not 0 < len(self.reason) <= 500 or self.duration_ms <= 0:
            raise ValueError("the reason is 1..500 characters and the duration positive")


@control_op
@dataclass(frozen=True)
class EmergencyReview(ControlRequest):
    """Emergency accesses to this node's records: those not signed off (`all`: every one)."""

    OP: ClassVar[str] = "emergency_review"
    all: bool = False


@control_op
@dataclass(frozen=True)
class EmergencyPending(ControlRequest):
    """Emergency requests waiting for an operator's approval."""

    OP: ClassVar[str] = "emergency_pending"


@control_op
@dataclass(frozen=True)
class EmergencyDecide(ControlRequest):
    """Approve (grant) or deny a waiting emergency request."""

    OP: ClassVar[str] = "emergency_decide"
    request_id: str
    approve: bool

    def __post_init__(self) -> None:
        if len(self.request_id) > 32:
            raise ValueError("a request id is at most 32 characters")


@control_op
@dataclass(frozen=True)
class EmergencySignoff(ControlRequest):
    """Sign off an emergency access (its entry id, or 8+ hex digits of it), with a note."""

    OP: ClassVar[str] = "emergency_signoff"
    emergency: str
    note: str = ""

    def __post_init__(self) -> None:
        if len(self.emergency) > 64 or len(self.note) > 500:
            raise ValueError("an emergency id is at most 64 hex digits, a note 500 characters")


@control_op
@dataclass(frozen=True)
class Audit(ControlRequest):
    """A record's audit trail (protocol.ledger.trail): asked of its owner's node or of a
    node with a current grant of it, since it lists who read what."""

    OP: ClassVar[str] = "audit"
    record_id: bytes

    def __post_init__(self) -> None:
        _key(self.record_id, "record id", RECORD_ID_SIZE)


def encode_request(request: ControlRequest) -> bytes:
    """One frame (length prefix included) carrying `request`."""
    return COMMANDS.encode(request)


def decode_request(payload: bytes) -> ControlRequest:
    return COMMANDS.decode(payload)
