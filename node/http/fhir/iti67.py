"""ITI-67 Find Document References: GET /fhir/DocumentReference?... (a searchset Bundle)
and GET /fhir/DocumentReference/{id} (one). Only what this node reads is found."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.http.auth import log_access, require
from node.http.context import HttpContext, context_of
from node.http.errors import FHIR_JSON
from node.http.fhir.catalog import Catalog
from node.http.fhir.resource import Described
from node.http.fhir.search import parse_query
from node.http.tokens import Scope
from node.http.v1 import record_id_param

CATALOG = "fhir.catalog"


def catalog_of(ctx: HttpContext) -> Catalog:
    """The node's catalog (one per API, so its cache outlives requests)."""
    found = ctx.extra.get(CATALOG)
    if not isinstance(found, Catalog):
        found = Catalog(ctx.node)
        ctx.extra[CATALOG] = found
    return found


def _incomplete(missing: int) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "incomplete",
                    "diagnostics": f"{missing} readable record(s) could not be described in time"
                    " (their holders did not answer); they may match: search again",
                }
            ],
        },
        "search": {"mode": "outcome"},
    }


async def search(request: Request) -> Response:
    token = require(request, Scope.READ)
    catalog = catalog_of(context_of(request))
    query = parse_query(request.url.query, request.query_params.multi_items())
    records = catalog.visible()
    if query.ids is not None:
        records = [r for r in records if r.record_id in query.ids]
    described, missing = await catalog.describe_all(records)
    hits = sorted(
        (d for d in described if query.match(d)),
        key=lambda d: (d.created_at, d.record_id),
        reverse=True,
    )
    page = hits[query.offset : query.offset + query.count]
    base = str(request.base_url)
    entries: list[dict[str, Any]] = []
    for found in page:
        log_access(token, "fhir search", found.record_id)
        entries.append(_entry(base, found))
    if missing:
        entries.append(_incomplete(missing))
    links = [{"relation": "self", "url": str(request.url)}]
    if query.offset + query.count < len(hits):
        following = request.url.include_query_params(
            _offset=query.offset + query.count, _count=query.count
        )
        links.append({"relation": "next", "url": str(following)})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(hits),
        "link": links,
        "entry": entries,
    }
    return JSONResponse(bundle, media_type=FHIR_JSON)


def _entry(base: str, found: Described) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}fhir/DocumentReference/{found.record_id.hex()}",
        "resource": found.resource,
        "search": {"mode": "match"},
    }


async def read(request: Request) -> Response:
    token = require(request, Scope.READ)
    catalog = catalog_of(context_of(request))
    record = catalog.readable(record_id_param(request))
    described = await catalog.describe(record)
    log_access(token, "fhir read", described.record_id)
    return JSONResponse(described.resource, media_type=FHIR_JSON)
