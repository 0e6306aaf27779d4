"""Record bodies through HTTP, streamed both ways with the memory of the CLI path.

Uploads are cut into segments as they arrive (protocol.records.upload), so
the node holds a segment or two of a 1 GiB upload at a time, and a client
that hangs up mid-way cancels the put, which drops what holders took.
Downloads stream segment by segment, with one byte range per request. The
node reads as itself: a token reads what the node may read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from node.http.auth import log_access
from node.http.context import HttpContext
from node.http.errors import ApiError
from node.http.ranges import RangeNotSatisfiable, byte_range
from node.http.tokens import Token
from node.logs import event, get_logger
from node.records.errors import short
from node.records.put import PutResult
from node.records.service import ReadHandle
from protocol.records.purpose import Purpose, parse_purpose
from protocol.records.upload import UploadSegments
from storage.codec.crypt import SegmentCipher
from storage.codec.manifest import RecordMetadata

log = get_logger("http")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,64}"
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?: *; *{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f\x7f]{{0,64}}\"))*"
)
# Content is whatever its owner (any member) stored, under any content type: a browser must
# never run it at this origin, where the status page's Basic credentials are sent.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-store",
}


def media_type(stored: str) -> str:
    """The stored content type if it is a well-formed media type, else octet-stream (the
    metadata is the owner's: it may hold anything, line breaks included)."""
    return stored if _MEDIA_TYPE.fullmatch(stored) else "application/octet-stream"


async def body_segments(request: Request, size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """The request body as (segment, last), every segment but the last `size` bytes."""
    segments = UploadSegments(size)
    async for chunk in request.stream():
        for segment in segments.add(chunk, False):
            yield segment
    for segment in segments.add(b"", True):
        yield segment


async def bytes_segments(data: bytes, size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """A body already in memory (a FHIR Binary) as segments."""
    view = memoryview(data)
    count = max(1, -(-len(data) // size))
    for index in range(count):
        yield bytes(view[index * size : (index + 1) * size]), index == count - 1


async def store(
    ctx: HttpContext,
    token: Token,
    segments: AsyncIterator[tuple[bytes, bool]],
    *,
    metadata: RecordMetadata,
    patient: bytes | None = None,
    grantees: Sequence[bytes] = (),
    expires_at: int = 0,
    size_hint: int = 0,
    require_full: bool = False,
) -> PutResult:
    """Store a record as this node, the patient (an address) co-owning its sharing."""
    result = await ctx.node.records.put(
        segments,
        metadata=metadata,
        grantees=[patient] if patient else [],
        expiring=grantees,
        expires_at=expires_at,
        size_hint=size_hint,
        require_full=require_full,
    )
    log_access(
        token,
        "store",
        result.record_id,
        size=result.size,
        degraded=result.verdict.degraded,
        grantees=len(grantees) + (patient is not None),
    )
    return result


@dataclass(frozen=True)
class Opened:
    """A record this node reads, with its key and true (unpadded) size and metadata."""

    handle: ReadHandle
    record_key: bytes
    size: int
    metadata: RecordMetadata

    @property
    def record_id(self) -> bytes:
        return self.handle.manifest.record_id


PURPOSE_HEADER = "X-Purpose-Of-Use"


def purpose_of(request: Request) -> Purpose | None:
    """The read's purpose of use: the `X-Purpose-Of-Use` header (a name or HL7 code);
    absent, the node chooses (emergency treatment under an emergency grant, else
    treatment); a 400 naming the vocabulary otherwise."""
    given = request.headers.get(PURPOSE_HEADER)
    if given is None:
        return None
    try:
        return parse_purpose(given)
    except ValueError as exc:
        raise ApiError(400, "value", f"{PURPOSE_HEADER}: {exc}") from None


async def open_record(ctx: HttpContext, record_id: bytes, request: Request) -> Opened:
    records = ctx.node.records
    handle = await records.open(record_id, purpose=purpose_of(request))
    record_key = records.record_key(handle)
    contents = handle.manifest.contents(SegmentCipher(record_key, record_id))
    return Opened(handle, record_key, contents.size, contents.metadata)


def download(
    ctx: HttpContext,
    request: Request,
    token: Token,
    opened: Opened,
    *,
    action: str = "read",
) -> Response:
    """The record's content as a streamed response, whole or one byte range."""
    size = opened.size
    try:
        wanted = byte_range(request.headers.get("range"), size)
    except RangeNotSatisfiable as exc:
        raise ApiError(416, "value", f"range not satisfiable: {exc}") from None
    first, last = wanted if wanted is not None else (0, size - 1)
    headers = {
        **DOWNLOAD_HEADERS,
        "Accept-Ranges": "bytes",
        "ETag": f'"{opened.record_id.hex()}"',
        "Content-Length": str(max(0, last - first + 1)),
    }
    name = _UNSAFE_NAME.sub("_", opened.metadata.filename)
    headers["Content-Disposition"] = f'attachment; filename="{name}"' if name else "attachment"
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    log_access(token, action, opened.record_id, first=first, last=last)
    return StreamingResponse(
        _content(ctx, opened, first, last),
        status_code=206 if wanted is not None else 200,
        headers=headers,
        media_type=media_type(opened.metadata.content_type),
    )


async def _content(ctx: HttpContext, opened: Opened, first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes first..last (inclusive) of the record, fetched segment by segment."""
    if last < first:
        return
    segment_size = opened.handle.manifest.segment_size
    start_segment, end_segment = first // segment_size, last // segment_size
    offset = start_segment * segment_size
    whole = first == 0 and last == opened.size - 1
    try:
        parts = ctx.node.records.plaintext(
            opened.handle, opened.record_key, start_segment, None if whole else end_segment
        )
        async for part in parts:
            if whole:
                yield part
            else:
                low, high = max(first - offset, 0), min(last + 1 - offset, len(part))
                if high > low:
                    yield part[low:high]
            offset += len(part)
    except Exception as exc:
        # The status line is gone: all that is left is to cut the body short.
        event(
            log,
            logging.WARNING,
            "http download cut short",
            record=short(opened.record_id),
            reason=str(exc) or type(exc).__name__,
        )
        raise
