"""Who is asking: a bearer token (or, for browsers, the token as a Basic password) of the
scope a route needs; and a log line naming the token for every record access."""

from __future__ import annotations

import base64
import binascii
import logging

from starlette.requests import Request

from node.config.http import LOOPBACK_HOSTS
from node.http.context import context_of
from node.http.errors import ApiError
from node.http.tokens import Scope, Token, TokenError
from node.logs import RateLimitedLog, event, get_logger
from node.records.errors import short

log = get_logger("http")
refusals = RateLimitedLog(log, "http request refused", period=60.0)


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    kind, _, value = header.partition(" ")
    value = value.strip()
    if kind.lower() == "bearer":
        return value
    if kind.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return password
    return ""


def client_host(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def is_local(request: Request) -> bool:
    return client_host(request) in LOOPBACK_HOSTS


def require(request: Request, scope: Scope) -> Token:
    """The request's token, if it allows `scope`; else 401 (none, unknown) or 403 (too weak)."""
    ctx = context_of(request)
    presented = presented_token(request)
    if presented is None:
        refusals.note("no token", client_host(request), path=request.url.path)
        raise ApiError(401, "login", "this request needs a token: Authorization: Bearer TOKEN")
    try:
        token = ctx.tokens.verify(presented)
    except TokenError as exc:
        event(log, logging.ERROR, "token file unusable", reason=str(exc))
        raise ApiError(
            500, "exception", "the node's token file is unusable (see its log)"
        ) from None
    if token is None:
        refusals.note("unknown token", client_host(request), path=request.url.path)
        raise ApiError(401, "login", "the token is unknown or revoked")
    if not token.allows(scope):
        refusals.note("scope", token.token_id, path=request.url.path, token=token.name)
        raise ApiError(
            403,
            "forbidden",
            f"token {token.name!r} has scope {token.scope.label}, this needs {scope.label}",
        )
    return token


def log_access(token: Token, action: str, record_id: bytes, **fields: object) -> None:
    """Every record access through HTTP, naming the token (never the token's secret)."""
    event(
        log,
        logging.INFO,
        "http record access",
        action=action,
        record=short(record_id),
        token=token.name,
        token_id=token.token_id,
        **fields,
    )
