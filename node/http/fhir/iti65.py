"""ITI-65 Provide Document Bundle: POST /fhir with a transaction Bundle.

Each DocumentReference with its Binary becomes one record put by this node:
the patient (her address) co-owns its sharing, the grantee extensions get
grants, and the DocumentReference goes into the record's encrypted metadata.
A transaction is all or nothing: when a later document fails to store, the
ones already stored are deleted (tombstoned) before the error is answered.
"""

from __future__ import annotations

import logging

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.http.auth import require
from node.http.context import HttpContext, context_of
from node.http.errors import FHIR_JSON, ApiError
from node.http.fhir import systems
from node.http.fhir.body import json_body
from node.http.fhir.submission import Document, Submission, parse_submission
from node.http.records_io import bytes_segments, store
from node.http.tokens import Scope, Token
from node.logs import event, get_logger
from node.offload import in_worker
from node.records.errors import RecordError, short
from storage.codec.manifest import RecordMetadata
from storage.errors import ManifestError

log = get_logger("http.fhir")


def metadata_of(document: Document) -> RecordMetadata:
    return RecordMetadata(
        content_type=document.content_type or "application/octet-stream",
        filename=document.title,
        patient_ref=document.patient.hex(),
        extra={systems.DOCUMENT_KEY: document.kept},
    )


async def _store_all(ctx: HttpContext, token: Token, submission: Submission) -> list[bytes]:
    """Each document stored as a record; on a failure the stored ones are deleted."""
    stored: list[bytes] = []
    segment_size = ctx.node.records.config.segment_size
    try:
        for document in submission.documents:
            result = await store(
                ctx,
                token,
                bytes_segments(document.data, segment_size),
                metadata=metadata_of(document),
                patient=document.patient,
                grantees=document.grantees,
                size_hint=len(document.data),
            )
            stored.append(result.record_id)
    except BaseException:
        with trio.CancelScope(shield=True):
            for record_id in stored:
                try:
                    await ctx.node.records.delete(record_id)
                except RecordError as exc:
                    event(log, logging.WARNING, "fhir rollback failed", record=short(record_id),
                          reason=str(exc))  # fmt: skip
        raise
    return stored


def _response(submission: Submission, stored: list[bytes]) -> dict[str, object]:
    """The transaction-response: one entry per request entry, in order."""
    locations: dict[int, str] = {}
    for document, record_id in zip(submission.documents, stored, strict=True):
        locations[document.entry] = f"DocumentReference/{record_id.hex()}"
        locations[document.binary_entry] = f"Binary/{record_id.hex()}"
    entries: list[dict[str, object]] = []
    for position, kind in enumerate(submission.kinds):
        if position in locations:
            entries.append({"response": {"status": "201 Created", "location": locations[position]}})
        else:  # a SubmissionSet List or a Patient: read, not kept as resources of their own
            entries.append({"response": {"status": "200 OK", "outcome": _not_kept(kind)}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def _not_kept(kind: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"the {kind} was checked but is not kept: each document is its"
                " own record, described by its DocumentReference",
            }
        ],
    }


async def provide(request: Request) -> Response:
    """ITI-65: store the documents of a transaction Bundle."""
    token = require(request, Scope.WRITE)
    ctx = context_of(request)
    value = await json_body(request, ctx.config.max_bundle_bytes)
    submission = await in_worker(parse_submission, value)
    del value
    for document in submission.documents:
        try:
            metadata_of(document).encode()  # metadata too large fails here, before any put
        except ManifestError as exc:
            raise ApiError(400, "too-costly", f"entry {document.entry}: {exc}") from None
    stored = await _store_all(ctx, token, submission)
    return JSONResponse(_response(submission, stored), media_type=FHIR_JSON)
