"""What every route needs: the node, the tokens, the [http] settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from starlette.requests import Request

from node.assembly import Node
from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http.tokens import TokenStore

WHOLE_BODIES_AT_ONCE = 2


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


def context_of(request: Request) -> HttpContext:
    ctx = request.app.state.medvault
    assert isinstance(ctx, HttpContext)
    return ctx
