"""The DHT's RPCs. Every request names its sender's contact so the answering
node can learn it; the sender's key must be the connection's authenticated
key (checked by the service), so a contact cannot be forged in someone
else's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocol.dht.contact import ContactInfo
from protocol.dht.store import ProviderRecord, ValueRecord
from protocol.net.messages import Message, register
from protocol.schema import MaxItems

# List caps, checked before any item is decoded (protocol.schema.MaxItems).
MAX_CONTACTS = 100  # contacts in one answer (dht.k is at most 100)
MAX_PROVIDERS = 256  # provider records in one answer


@register
@dataclass(frozen=True)
class Hello(Message):
    """Exchange contacts on a fresh connection; the answer is a Hello with the answerer's."""

    TYPE: ClassVar[str] = "hello"
    sender: ContactInfo


@register
@dataclass(frozen=True)
class FindNode(Message):
    TYPE: ClassVar[str] = "find_node"
    sender: ContactInfo
    target: bytes


@register
@dataclass(frozen=True)
class NodesFound(Message):
    TYPE: ClassVar[str] = "nodes_found"
    contacts: Annotated[tuple[ContactInfo, ...], MaxItems(MAX_CONTACTS)]


@register
@dataclass(frozen=True)
class FindValue(Message):
    TYPE: ClassVar[str] = "find_value"
    sender: ContactInfo
    key: bytes


@register
@dataclass(frozen=True)
class ValueFound(Message):
    """The record if held, and the closest contacts either way."""

    TYPE: ClassVar[str] = "value_found"
    record: ValueRecord | None
    contacts: Annotated[tuple[ContactInfo, ...], MaxItems(MAX_CONTACTS)]


@register
@dataclass(frozen=True)
class StoreValue(Message):
    TYPE: ClassVar[str] = "store_value"
    sender: ContactInfo
    record: ValueRecord


@register
@dataclass(frozen=True)
class AddProvider(Message):
    """Store a provider record: the sender's own, or one handed on (it is signed)."""

    TYPE: ClassVar[str] = "add_provider"
    sender: ContactInfo
    record: ProviderRecord


@register
@dataclass(frozen=True)
class Stored(Message):
    TYPE: ClassVar[str] = "stored"
    accepted: bool
    reason: str


@register
@dataclass(frozen=True)
class GetProviders(Message):
    TYPE: ClassVar[str] = "get_providers"
    sender: ContactInfo
    key: bytes


@register
@dataclass(frozen=True)
class ProvidersFound(Message):
    TYPE: ClassVar[str] = "providers_found"
    providers: Annotated[tuple[ProviderRecord, ...], MaxItems(MAX_PROVIDERS)]
    contacts: Annotated[tuple[ContactInfo, ...], MaxItems(MAX_CONTACTS)]
