"""What every route needs: the node, the tokens, the [http] settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from node.assembly import Node
from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http.tokens import TokenStore


@dataclass
class HttpContext:
    node: Node
    tokens: TokenStore
    config: HttpConfig
    ops: ControlOps  # the control socket's answers, reused for the JSON API
    extra: dict[str, object] = field(default_factory=dict)


def context_of(request: Request) -> HttpContext:
    ctx = request.app.state.medvault
    assert isinstance(ctx, HttpContext)
    return ctx
