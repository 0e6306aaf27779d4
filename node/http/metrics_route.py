"""GET /metrics: the node's Prometheus exposition (docs/monitoring.md), for a read token."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from node.http.auth import require
from node.http.context import context_of
from node.http.tokens import Scope
from node.metrics.registry import CONTENT_TYPE, exposition


async def metrics(request: Request) -> Response:
    require(request, Scope.READ)
    body = exposition(context_of(request).node)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
