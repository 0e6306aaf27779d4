"""The HTTP API of one running node: its routes over its services, and its tokens."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from node.assembly import Node
from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http import metrics_route, status_page
from node.http.app import build_app
from node.http.context import HttpContext
from node.http.fhir.routes import fhir_routes
from node.http.tokens import TokenStore


def api_routes() -> list[BaseRoute]:
    """The routes beside the JSON API (node.http.v1), each part of the API adding its own."""
    return [*fhir_routes(), *status_page.routes(), *metrics_route.routes()]


def node_api(node: Node, root: Path, config: HttpConfig, ops: ControlOps) -> Starlette:
    tokens = TokenStore(root, clock_ms=node.clock_ms)
    return build_app(HttpContext(node, tokens, config, ops), api_routes())
