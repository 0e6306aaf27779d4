"""GET /v1/events: the claim events this node's own key may see, as Server-Sent Events.

An insurer runs a node; hospitals (or the patient's wallet) grant records to
its node key; a token of scope read on its node follows every claim by those
records' patients. Each event is `event: claim`, `id:` a cursor and `data:`
the event's canonical JSON (what `medvault events verify` checks), or with
`?fhir=true` its FHIR Claim. A client resumes with `Last-Event-ID` (or
`?after=`). The stream computes what it sends from the ledger and its cursor
(node.records.claim_log) and waits for the ledger to change: it holds no
queue, at most one batch of events. Streams are bounded in all and per
token; one more is refused 429 at once rather than queued, since an idle
stream may last for days and a waiting client could not tell.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from node.http.auth import log_access, require
from node.http.context import HttpContext, context_of
from node.http.errors import ApiError
from node.http.fhir.claim import render_claim
from node.http.tokens import Scope as TokenScope
from node.http.tokens import Token
from node.logs import event, get_logger
from node.records.claim_log import ClaimLog, Sent
from protocol.claims import event as claims

log = get_logger("http")
BATCH = 32  # events materialised at once per stream
MAX_CURSOR = 40  # characters of a Last-Event-ID


class EventStream(StreamingResponse):
    """A streamed response that gives its stream slot back however it ends."""

    def __init__(self, frames: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def claim_log_of(ctx: HttpContext) -> ClaimLog:
    if ctx.claim_log is None:
        ctx.claim_log = ClaimLog(ctx.node)
    return ctx.claim_log


def parse_cursor(text: str | None, claim_log: ClaimLog) -> int:
    """`EPOCH-POSITION` as sent in `id:`; another process's epoch starts over (0)."""
    if text is None or text in ("", "0"):
        return 0
    epoch, _, position = text.partition("-")
    if len(text) > MAX_CURSOR or not position.isdigit() or not epoch.isalnum():
        raise ApiError(400, "value", "Last-Event-ID (or after) is not a cursor of this API")
    if epoch != claim_log.epoch:
        return 0  # written before a restart: positions moved, so send everything again
    if int(position) > len(claim_log.claims):
        raise ApiError(400, "value", "Last-Event-ID (or after) lies past the last event")
    return int(position)


def _frame(claim_log: ClaimLog, sent: Sent, fhir: bool) -> bytes:
    verified = sent.verified
    if fhir:
        data = json.dumps(render_claim(verified), sort_keys=True, separators=(",", ":"))
    else:
        data = claims.encode(verified.event).decode("ascii")
    return f"id: {claim_log.epoch}-{sent.position}\nevent: claim\ndata: {data}\n\n".encode()


async def _frames(
    ctx: HttpContext, claim_log: ClaimLog, token: Token, cursor: int, fhir: bool
) -> AsyncIterator[bytes]:
    yield b": medvault claim events\n\n"  # the client sees the stream open at once
    while True:
        grown = claim_log.changed()  # taken before looking: no change falls between
        batch, cursor = await claim_log.after(cursor, BATCH)
        for sent in batch:
            verified = sent.verified
            certified = sent.uncertified is None
            log_access(token, "claim event", verified.record_id,
                       event=verified.hash.hex()[:16], certified=certified)  # fmt: skip
            yield _frame(claim_log, sent, fhir)
        if cursor < len(claim_log.claims):
            continue
        with trio.move_on_after(ctx.heartbeat_s) as idle:
            await grown.wait()
        if idle.cancelled_caught:
            yield b": keep-alive\n\n"


async def events(request: Request) -> Response:
    token = require(request, TokenScope.READ)
    ctx = context_of(request)
    fhir_text = request.query_params.get("fhir", "false").lower()
    if fhir_text not in ("true", "false", "1", "0"):
        raise ApiError(400, "value", "fhir must be true or false")
    fhir = fhir_text in ("true", "1")
    claim_log = claim_log_of(ctx)
    cursor = parse_cursor(
        request.headers.get("last-event-id") or request.query_params.get("after"), claim_log
    )
    open_now = ctx.streams_of.get(token.token_id, 0)
    if open_now >= ctx.streams_per_token:
        event(log, logging.INFO, "event stream refused", token=token.name, why="per token")
        message = f"token {token.name!r} has {open_now} event streams open already"
        raise ApiError(429, "throttled", message)
    slot = object()
    try:
        ctx.event_streams.acquire_on_behalf_of_nowait(slot)
    except trio.WouldBlock:
        event(log, logging.INFO, "event stream refused", token=token.name, why="in all")
        raise ApiError(429, "throttled", "too many event streams are open on this node") from None
    ctx.streams_of[token.token_id] = open_now + 1

    def release() -> None:
        ctx.event_streams.release_on_behalf_of(slot)
        left = ctx.streams_of.get(token.token_id, 1) - 1
        if left > 0:
            ctx.streams_of[token.token_id] = left
        else:
            ctx.streams_of.pop(token.token_id, None)

    return EventStream(_frames(ctx, claim_log, token, cursor, fhir), release)
