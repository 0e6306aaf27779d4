"""The ledger's gossip RPCs: compare feed heads, fetch ranges, push new entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.dht.contact import ContactInfo
from protocol.net.messages import Message, register


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
    heads: tuple[FeedHead, ...]


@register
@dataclass(frozen=True)
class LedgerHeadsReply(Message):
    TYPE: ClassVar[str] = "ledger_heads_reply"
    heads: tuple[FeedHead, ...]


@register
@dataclass(frozen=True)
class GetEntries(Message):
    TYPE: ClassVar[str] = "get_entries"
    ranges: tuple[FeedRange, ...]


@register
@dataclass(frozen=True)
class EntriesFound(Message):
    TYPE: ClassVar[str] = "entries_found"
    entries: tuple[bytes, ...]


@register
@dataclass(frozen=True)
class PushEntries(Message):
    """Entries new to the sender, pushed at once rather than waiting for a round."""

    TYPE: ClassVar[str] = "push_entries"
    entries: tuple[bytes, ...]


@register
@dataclass(frozen=True)
class PushAck(Message):
    TYPE: ClassVar[str] = "push_ack"
    accepted: int
