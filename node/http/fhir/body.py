"""A FHIR request body: read with a running count (Content-Length is a claim, not a bound),
then parsed as JSON off the trio thread."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from node.http.errors import ApiError
from node.offload import in_worker

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
MAX_DEPTH = 48  # FHIR resources nest a dozen levels; deeper is an attack on the validator


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too-costly",
        f"the request body is over http.max_bundle_bytes ({limit} bytes); larger documents"
        " go through POST /v1/records, which streams",
    )


async def read_bounded(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it passes `limit` bytes (nothing more is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    count = 0
    async for chunk in request.stream():
        count += len(chunk)
        if count > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def check_media_type(request: Request) -> None:
    """415 unless the body is declared as JSON (or not declared at all)."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise ApiError(
            415, "not-supported", f"the body must be application/fhir+json, not {media[:80]!r}"
        )


def _too_deep(value: Any) -> bool:
    """Whether `value` nests lists and objects deeper than MAX_DEPTH (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _loads(raw: bytes) -> Any:
    deep = ApiError(400, "structure", f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "structure", f"the body is not valid JSON: {exc}") from None
    if _too_deep(value):
        raise deep
    return value


async def json_body(request: Request, limit: int) -> Any:
    """The request body parsed as JSON, bounded by `limit` bytes."""
    check_media_type(request)
    raw = await read_bounded(request, limit)
    if not raw.strip():
        raise ApiError(400, "structure", "the request body is empty (expected a FHIR Bundle)")
    return await in_worker(_loads, raw)
