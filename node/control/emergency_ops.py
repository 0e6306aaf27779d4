"""The control requests of break-glass access (docs/emergency.md): request, review,
pending, approve/deny, sign-off. Reasons are opened by the daemon, which holds the
owner's record keys; they go to the operator on the local socket, never to logs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from node.assembly import Node
from protocol.control.commands import (
    EmergencyDecide,
    EmergencyPending,
    EmergencyRequest,
    EmergencyReview,
    EmergencySignoff,
)
from protocol.control.replies import (
    ControlReply,
    EmergencyDecided,
    EmergencyOutcome,
    EmergencyOutcomes,
    EmergencyPendingReply,
    EmergencyPendingRow,
    EmergencyReviewReply,
    EmergencyRow,
    Written,
)
from protocol.ledger.entries import EmergencyBody


def handlers(node: Node) -> dict[type, Callable[[Any], Awaitable[ControlReply]]]:
    """The emergency requests and what answers each (merged into ControlOps' table)."""

    async def request(req: EmergencyRequest) -> EmergencyOutcomes:
        found = await node.emergency_asker.ask_all(req.record_ids, req.reason, req.duration_ms)
        return EmergencyOutcomes(
            tuple(
                EmergencyOutcome(
                    o.record_id, o.owner, o.status, o.code, o.detail, o.expires_at, o.request_id
                )
                for o in found
            )
        )

    async def review(req: EmergencyReview) -> EmergencyReviewReply:
        rows = []
        for shown in node.emergency.review(include_signed=req.all):
            access = shown.access
            rows.append(
                EmergencyRow(
                    emergency=access.entry.hash,
                    record_id=access.body.record_id,
                    requester=access.body.requester,
                    site=shown.site,
                    reason=shown.reason,
                    expires_at=access.body.expires_at,
                    granted_at=access.entry.timestamp,
                    signed_off_at=access.signoff.timestamp if access.signoff else 0,
                    note=shown.note,
                )
            )
        return EmergencyReviewReply(tuple(rows))

    async def pending(req: EmergencyPending) -> EmergencyPendingReply:
        return EmergencyPendingReply(
            tuple(
                EmergencyPendingRow(
                    i.request_id,
                    i.record_id,
                    i.requester,
                    i.site,
                    i.reason,
                    i.duration_ms,
                    i.asked_at,
                )
                for i in node.emergency.queue.items()
            )
        )

    async def decide(req: EmergencyDecide) -> EmergencyDecided:
        if not req.approve:
            node.emergency.deny(req.request_id)
            return EmergencyDecided(False, 0, ())
        entries = await node.emergency.approve(req.request_id)
        body = entries[-1].body
        assert isinstance(body, EmergencyBody)
        return EmergencyDecided(True, body.expires_at, tuple(e.raw for e in entries))

    async def signoff(req: EmergencySignoff) -> Written:
        return Written((await node.emergency.signoff(req.emergency, req.note)).raw)

    return {
        EmergencyRequest: request,
        EmergencyReview: review,
        EmergencyPending: pending,
        EmergencyDecide: decide,
        EmergencySignoff: signoff,
    }
