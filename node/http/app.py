"""The Starlette application: routes from each part of the API, and one way to fail."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from node.http import v1
from node.http.context import HttpContext
from node.http.errors import NODE_ERRORS, ApiError, error_response, from_node_error
from node.logs import event, get_logger

log = get_logger("http")
_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly"}


async def _node_error(request: Request, exc: Exception) -> Response:
    return error_response(request, from_node_error(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid")
    return error_response(request, ApiError(exc.status_code, code, str(exc.detail)))


async def _gone(request: Request, exc: Exception) -> Response:
    """The client hung up mid-upload: the put was cancelled and dropped; nobody reads this."""
    event(log, logging.INFO, "http client went away", path=request.url.path)
    return Response(status_code=499)


async def _unexpected(request: Request, exc: Exception) -> Response:
    event(
        log,
        logging.ERROR,
        "http request failed",
        path=request.url.path,
        error=type(exc).__name__,
        reason=str(exc)[:200],
    )
    return error_response(
        request, ApiError(500, "exception", "internal error (see the node's log)")
    )


def build_app(ctx: HttpContext, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The API over `ctx`'s node; `routes` come first (the FHIR API, the status page...)."""
    handlers = {
        **dict.fromkeys(NODE_ERRORS, _node_error),
        HTTPException: _http_error,
        ClientDisconnect: _gone,
        Exception: _unexpected,
    }
    app = Starlette(routes=[*routes, *v1.routes()], exception_handlers=handlers)
    app.state.medvault = ctx
    return app
