"""The break-glass RPC: a requester's node asks a record's owner node for access.

It travels over the authenticated connection, so the owner knows the asking
node's key (and its certified site) from the handshake, never from the body.
The reason crosses the encrypted channel in clear text and is sealed by the
owner before it reaches the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocol.emergency.sealing import MAX_REASON_CHARS
from protocol.net.messages import Message, register
from protocol.schema import MaxItems

MAX_DURATION_MS = 30 * 86_400_000  # the most any request may ask (the owner caps lower)
MAX_DETAIL = 200


@register
@dataclass(frozen=True)
class EmergencyAsk(Message):
    TYPE: ClassVar[str] = "emergency_ask"
    record_id: bytes
    reason: str
    duration_ms: int

    def __post_init__(self) -> None:
        if len(self.record_id) != 32:
            raise ValueError("record id must be 32 bytes")
        if not 0 < len(self.reason) <= MAX_REASON_CHARS or not self.reason.isprintable():
            raise ValueError(f"the reason is 1..{MAX_REASON_CHARS} printable characters")
        if not 0 < self.duration_ms <= MAX_DURATION_MS:
            raise ValueError(f"the duration is 1..{MAX_DURATION_MS} ms")


@register
@dataclass(frozen=True)
class EmergencyAnswer(Message):
    """`status`: granted (until `expires_at`, `entries`: the grant and emergency entries,
    raw, so the requester reads at once), queued (`request_id`), or refused (`code`)."""

    TYPE: ClassVar[str] = "emergency_answer"
    status: str
    code: str = ""
    detail: str = ""
    expires_at: int = 0
    request_id: str = ""
    entries: Annotated[tuple[bytes, ...], MaxItems(2)] = ()

    def __post_init__(self) -> None:
        if self.status not in {"granted", "queued", "refused"}:
            raise ValueError(f"unknown emergency status {self.status!r}")
        if len(self.detail) > MAX_DETAIL or len(self.code) > 32 or len(self.request_id) > 32:
            raise ValueError("emergency answer text too long")
        if any(len(raw) > 4096 for raw in self.entries):
            raise ValueError("an entry is at most 4096 bytes")
