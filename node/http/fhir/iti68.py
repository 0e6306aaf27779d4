"""ITI-68 Retrieve Document: GET /fhir/Binary/{id} streams the record's bytes (one Range
works), with its content type. Asked for FHIR JSON (Accept), it answers a Binary resource,
for documents small enough to hold in memory base64-encoded, else 406."""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.http.auth import log_access, require
from node.http.context import context_of
from node.http.errors import FHIR_JSON, ApiError
from node.http.records_io import download, open_record
from node.http.tokens import Scope
from node.http.v1 import record_id_param
from node.records.fetch import TooFewShards

BINARY_JSON_MAX = 4 * 1024 * 1024  # bytes of document a Binary resource may carry
_RESOURCE_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def wants_resource(request: Request) -> bool:
    """Whether Accept asks for the Binary resource rather than the document's own bytes."""
    accept = request.headers.get("accept", "")
    first = accept.partition(",")[0].partition(";")[0].strip().lower()
    return first in _RESOURCE_TYPES


async def retrieve(request: Request) -> Response:
    token = require(request, Scope.READ)
    ctx = context_of(request)
    opened = await open_record(ctx, record_id_param(request), request)
    found, k = len(opened.handle.fetcher.holders), opened.handle.manifest.k
    if found < k:  # say so now: once streaming, all a failure can do is cut the body short
        raise TooFewShards(f"holders answered for {found} shard indices, a read needs {k}")
    if not wants_resource(request):
        return download(ctx, request, token, opened, action="fhir retrieve")
    if opened.size > BINARY_JSON_MAX:
        raise ApiError(
            406,
            "too-costly",
            f"the document is {opened.size} bytes: a Binary resource carries at most"
            f" {BINARY_JSON_MAX}; ask without Accept: application/fhir+json for its bytes",
        )
    log_access(token, "fhir retrieve", opened.record_id, form="Binary")
    async with ctx.whole_bodies:
        parts = [p async for p in ctx.node.records.plaintext(opened.handle, opened.record_key)]
        binary = {
            "resourceType": "Binary",
            "id": opened.record_id.hex(),
            "contentType": opened.metadata.content_type or "application/octet-stream",
            "data": base64.b64encode(b"".join(parts)).decode(),
        }
        del parts
        return JSONResponse(binary, media_type=FHIR_JSON, headers={"Cache-Control": "no-store"})
