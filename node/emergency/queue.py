"""Requests waiting for an operator's approval: bounded per requester and in all.

Kept in memory: a restart empties it (the requester asks again), so a flood
can cost at most the configured bounds until then.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pending:
    request_id: str
    record_id: bytes
    requester: bytes
    site: str | None
    reason: str
    duration_ms: int
    asked_at: int  # ms


class QueueFull(Exception):
    """No room for another request (the message says whose bound)."""


class ApprovalQueue:
    def __init__(self, *, most: int, per_requester: int) -> None:
        self.most = most
        self.per_requester = per_requester
        self._items: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._items)

    def find(self, record_id: bytes, requester: bytes) -> Pending | None:
        for item in self._items.values():
            if (item.record_id, item.requester) == (record_id, requester):
                return item
        return None

    def add(self, item: Pending) -> Pending:
        """Queue `item`; a request for the same record by the same node keeps its place."""
        already = self.find(item.record_id, item.requester)
        if already is not None:
            return already
        if sum(1 for i in self._items.values() if i.requester == item.requester) >= (
            self.per_requester
        ):
            raise QueueFull(f"this requester has {self.per_requester} requests waiting")
        if len(self._items) >= self.most:
            raise QueueFull(f"{self.most} requests are waiting for approval")
        self._items[item.request_id] = item
        return item

    def take(self, request_id: str) -> Pending | None:
        return self._items.pop(request_id, None)

    def items(self) -> list[Pending]:
        return sorted(self._items.values(), key=lambda i: (i.asked_at, i.request_id))
