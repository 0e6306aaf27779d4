"""Who may break the glass on this node's records, for how long, and whether a human
approves first: the owner's documented policy as a pure decision."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Refusal(enum.StrEnum):
    """Why an emergency request was refused: the code the requester gets."""

    NOT_ALLOWED = "not_allowed"  # the requester is not in the owner's policy
    DISABLED = "disabled"  # the owner allows nobody (the default)
    UNKNOWN_RECORD = "unknown_record"  # the record is unknown, deleted, or not the owner's
    BAD_REQUEST = "bad_request"  # duration or reason out of range
    QUEUE_FULL = "queue_full"  # approval queue full (for this requester or in all)
    TOO_MANY = "too_many"  # this requester's automatic grants this hour are used up
    DENIED = "denied"  # an operator denied the queued request
    ALREADY_GRANTED = "already_granted"  # the requester holds a grant lasting as long or longer


@dataclass(frozen=True)
class Policy:
    allowed_sites: frozenset[str] = frozenset()
    allowed_nodes: frozenset[bytes] = frozenset()
    max_duration_ms: int = 12 * 3_600_000
    require_approval: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_sites or self.allowed_nodes)


@dataclass(frozen=True)
class Allow:
    duration_ms: int  # min(asked, max)
    approval: bool  # a human must approve before the grant is written


@dataclass(frozen=True)
class Refuse:
    code: Refusal
    detail: str


def decide(policy: Policy, requester: bytes, site: str | None, asked_ms: int) -> Allow | Refuse:
    """Allowed by node key or by certified site; the duration capped at the maximum."""
    if asked_ms <= 0:
        return Refuse(Refusal.BAD_REQUEST, "the duration must be positive")
    if not policy.enabled:
        return Refuse(Refusal.DISABLED, "this node grants no emergency access")
    by_key = requester in policy.allowed_nodes
    by_site = site is not None and site in policy.allowed_sites
    if not (by_key or by_site):
        return Refuse(Refusal.NOT_ALLOWED, "the requester is not allowed by the owner's policy")
    return Allow(min(asked_ms, policy.max_duration_ms), policy.require_approval)
