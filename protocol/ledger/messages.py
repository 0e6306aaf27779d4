"""The ledger's gossip RPCs: compare feed heads, fetch ranges, push new entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocol.dht.contact import ContactInfo
from protocol.net.messages import Message, register
from protocol.schema import MaxItems

# List caps, checked before any item is decoded (protocol.schema.MaxItems).
MAX_HEADS = 65_536  # feeds compared in one exchange
MAX_RANGES = 4096  # feed ranges asked in one GetEntries
MAX_ENTRIES = 65_536  # entries in one answer or push (also bounded by gossip.budget)


@dataclass(frozen=True)
class FeedHead:
    author: bytes
    seq: int
    count: int
    tip: bytes

    def __post_init__(self) -> None:
        if len(self.author) != 32 or self.seq < 1 or self.count < self.seq or len(self.tip) != 16:
            raise ValueError("a feed head needs a 32-byte author, 1 <= seq <= count, a 16-byte tip")


@dataclass(frozen=True)
class FeedRange:
    author: bytes
    first: int
    last: int

    def __post_init__(self) -> None:
        if len(self.author) != 32 or not 1 <= self.first <= self.last:
            raise ValueError("a feed range needs a 32-byte author and 1 <= first <= last")


@register
@dataclass(frozen=True)
class LedgerHeads(Message):
    """Here is how far my feeds go; tell me how far yours go (anti-entropy)."""

    TYPE: ClassVar[str] = "ledger_heads"
    sender: ContactInfo
    heads: Annotated[tuple[FeedHead, ...], MaxItems(MAX_HEADS)]


@register
@dataclass(frozen=True)
class LedgerHeadsReply(Message):
    TYPE: ClassVar[str] = "ledger_heads_reply"
    heads: Annotated[tuple[FeedHead, ...], MaxItems(MAX_HEADS)]


@register
@dataclass(frozen=True)
class GetEntries(Message):
    TYPE: ClassVar[str] = "get_entries"
    ranges: Annotated[tuple[FeedRange, ...], MaxItems(MAX_RANGES)]


@register
@dataclass(frozen=True)
class EntriesFound(Message):
    TYPE: ClassVar[str] = "entries_found"
    entries: Annotated[tuple[bytes, ...], MaxItems(MAX_ENTRIES)]


@register
@dataclass(frozen=True)
class PushEntries(Message):
    """Entries new to the sender, pushed at once rather than waiting for a round."""

    TYPE: ClassVar[str] = "push_entries"
    entries: Annotated[tuple[bytes, ...], MaxItems(MAX_ENTRIES)]


@register
@dataclass(frozen=True)
class PushAck(Message):
    TYPE: ClassVar[str] = "push_ack"
    accepted: int
