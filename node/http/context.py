"""What every route needs: the node, the tokens, the [http] settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from starlette.requests import Request

from node.assembly import Node
from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http.tokens import TokenStore
from node.records.claim_log import ClaimLog

WHOLE_BODIES_AT_ONCE = 2
EVENT_STREAMS = 16  # GET /v1/events streams open at once, all tokens together
EVENT_STREAMS_PER_TOKEN = 4
HEARTBEAT_S = 15.0  # a comment line on an idle event stream, so proxies keep it


@dataclass
class HttpContext:
    node: Node
    tokens: TokenStore
    config: HttpConfig
    ops: ControlOps  # the control socket's answers, reused for the JSON API
    extra: dict[str, object] = field(default_factory=dict)
    # Requests whose whole body sits in memory (an ITI-65 Bundle, a Binary resource):
    # at most this many at once, so concurrent ones cannot add up to the node's memory.
    whole_bodies: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(WHOLE_BODIES_AT_ONCE)
    )
    # Claim event streams (node.http.events): a limit in all and one per token, both
    # answered 429 when full rather than queued (an idle stream may last for days).
    event_streams: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(EVENT_STREAMS)
    )
    streams_per_token: int = EVENT_STREAMS_PER_TOKEN
    streams_of: dict[str, int] = field(default_factory=dict)  # token id -> streams open
    heartbeat_s: float = HEARTBEAT_S
    claim_log: ClaimLog | None = None  # made by the first stream (it subscribes to the ledger)


def context_of(request: Request) -> HttpContext:
    ctx = request.app.state.medvault
    assert isinstance(ctx, HttpContext)
    return ctx
