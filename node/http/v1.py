"""The plain JSON API beside FHIR, for clients that do not speak it (described by
GET /v1/openapi.json). Answers reuse the control socket's (node.control.ops)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.http import events
from node.http.auth import log_access, require
from node.http.context import context_of
from node.http.errors import ApiError
from node.http.openapi import OPENAPI
from node.http.records_io import body_segments, download, open_record, store
from node.http.tokens import Scope
from protocol.control.commands import RECORD_ID_SIZE, Check, ListRecords, Peers, Status
from protocol.control.jsonable import jsonable
from storage.codec.manifest import RecordMetadata

MAX_GRANTEES = 64


def hex_key(text: str, what: str, sizes: tuple[int, ...]) -> bytes:
    """Hex of `sizes` bytes, or a 400 naming the parameter."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, "value", f"{what} is not hex: {text[:80]!r}") from None
    if len(value) not in sizes:
        raise ApiError(400, "value", f"{what} must be {' or '.join(map(str, sizes))} bytes")
    return value


def record_id_param(request: Request) -> bytes:
    return hex_key(request.path_params["record_id"], "the record id", (RECORD_ID_SIZE,))


def flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, "value", f"{name} must be true or false")
    return value in ("true", "1")


async def status(request: Request) -> Response:
    require(request, Scope.READ)
    return JSONResponse(jsonable(await context_of(request).ops.status(Status())))


async def peers(request: Request) -> Response:
    require(request, Scope.READ)
    return JSONResponse(jsonable(await context_of(request).ops.peers(Peers())))


async def list_records(request: Request) -> Response:
    require(request, Scope.READ)
    reply = await context_of(request).ops.list_records(ListRecords(reader=None))
    return JSONResponse(jsonable(reply))


async def put_record(request: Request) -> Response:
    token = require(request, Scope.WRITE)
    ctx = context_of(request)
    query = request.query_params
    patient = query.get("patient")
    grantees = query.getlist("grant")
    if len(grantees) > MAX_GRANTEES:
        raise ApiError(400, "value", f"at most {MAX_GRANTEES} grant parameters")
    try:
        expires_at = int(query.get("expires_at", "0"))
    except ValueError:
        raise ApiError(400, "value", "expires_at is milliseconds since 1970") from None
    if not 0 <= expires_at < 2**63:  # checked before the upload, not by the ledger after it
        raise ApiError(400, "value", "expires_at is milliseconds since 1970")
    address = hex_key(patient, "patient", (66,)) if patient else None
    length = request.headers.get("content-length", "0")
    metadata = RecordMetadata(
        content_type=request.headers.get("content-type", "application/octet-stream")[:200],
        filename=query.get("filename", "")[:255],
        patient_ref=address.hex() if address else "",  # as searches spell it
    )
    result = await store(
        ctx,
        token,
        body_segments(request, ctx.node.records.config.segment_size),
        metadata=metadata,
        patient=address,
        grantees=[hex_key(g, "grant", (32, 66)) for g in grantees],
        expires_at=expires_at,
        size_hint=int(length) if length.isdigit() else 0,
        require_full=flag(request, "require_full"),
    )
    verdict = result.verdict
    return JSONResponse(
        {
            "record_id": result.record_id.hex(),
            "size": result.size,
            "segments": result.manifest.segment_count,
            "holders": verdict.holders,
            "sites": verdict.sites,
            "degraded": verdict.degraded,
            "reasons": list(verdict.reasons),
        },
        status_code=201,
        headers={"Location": f"/v1/records/{result.record_id.hex()}"},
    )


async def get_record(request: Request) -> Response:
    token = require(request, Scope.READ)
    ctx = context_of(request)
    return download(ctx, request, token, await open_record(ctx, record_id_param(request), request))


async def check(request: Request) -> Response:
    """Health of one record (`record`) or of all this node owns or holds; `repair` mends."""
    token = require(request, Scope.ADMIN)
    ctx = context_of(request)
    record = request.query_params.get("record")
    record_id = hex_key(record, "record", (RECORD_ID_SIZE,)) if record else None
    repair = request.method == "POST" and flag(request, "repair")
    if record_id is not None:
        log_access(token, "check", record_id, repair=repair)
    reply = await ctx.ops.check(
        Check(record_id=record_id, repair=repair, verify=flag(request, "verify"))
    )
    return JSONResponse(jsonable(reply))


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def routes() -> list[Route]:
    handlers: list[tuple[str, Callable[[Request], Any], list[str]]] = [
        ("/v1/openapi.json", openapi, ["GET"]),
        ("/v1/status", status, ["GET"]),
        ("/v1/peers", peers, ["GET"]),
        ("/v1/records", list_records, ["GET"]),
        ("/v1/records", put_record, ["POST"]),
        ("/v1/records/{record_id}", get_record, ["GET"]),
        ("/v1/check", check, ["GET", "POST"]),
        ("/v1/events", events.events, ["GET"]),
    ]
    return [Route(path, handler, methods=methods) for path, handler, methods in handlers]
