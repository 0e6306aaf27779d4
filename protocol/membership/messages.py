"""The revocation gossip RPC: here are revocations I know; how many were new to you?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocol.net.messages import Message, register
from protocol.schema import MaxItems

# Revocations in one message, checked before any is decoded. A node's whole list
# (at most protocol.membership.revocation.MAX_REVOCATIONS) goes in several.
MAX_SHARED = 256


@register
@dataclass(frozen=True)
class ShareRevocations(Message):
    """Encoded revocations (protocol.membership.revocation) pushed to a peer."""

    TYPE: ClassVar[str] = "share_revocations"
    revocations: Annotated[tuple[bytes, ...], MaxItems(MAX_SHARED)]


@register
@dataclass(frozen=True)
class RevocationsTaken(Message):
    """How many of the pushed revocations revoked a key not revoked before."""

    TYPE: ClassVar[str] = "revocations_taken"
    new: int
