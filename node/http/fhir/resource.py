"""A record as a DocumentReference, rebuilt from its encrypted metadata, with the values
ITI-67 searches on.

Records published with ITI-65 keep their DocumentReference (RecordMetadata.extra);
records put another way (the CLI, /v1) get a minimal one from their content
type, file name and patient. What a record's owner wrote there is theirs and
may be junk: junk falls back to the minimal form, it never fails a search.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference

from node.http.fhir import systems
from node.http.fhir.dates import Span, instant, parse_span
from storage.codec.manifest import RecordMetadata

Coding = tuple[str, str]  # (system, code); "" where absent


@dataclass(frozen=True)
class Described:
    """One record as a DocumentReference, and what a search compares."""

    record_id: bytes
    created_at: int
    resource: dict[str, Any]
    patient: str  # her address, hex ("" when none)
    status: str
    date: Span | None
    creation: Span | None
    types: tuple[Coding, ...]
    categories: tuple[Coding, ...]
    cost: int  # approximate bytes held in a cache


def _published(metadata: RecordMetadata) -> dict[str, Any] | None:
    text = metadata.extra.get(systems.DOCUMENT_KEY)
    if not text:
        return None
    try:
        kept = json.loads(text)
        DocumentReference.model_validate(kept)
    except (ValueError, TypeError, KeyError, RecursionError):  # ValidationError is a ValueError
        return None
    return kept if isinstance(kept, dict) and kept.get("content") else None


def _minimal(metadata: RecordMetadata) -> dict[str, Any]:
    attachment: dict[str, Any] = {}
    if metadata.filename:
        attachment["title"] = metadata.filename
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": attachment}],
    }


def _codings(concept: Any) -> tuple[Coding, ...]:
    if not isinstance(concept, dict):
        return ()
    found = []
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict):
            found.append((str(coding.get("system") or ""), str(coding.get("code") or "")))
    return tuple(found)


def _span(value: Any) -> Span | None:
    return parse_span(value) if isinstance(value, str) else None


def describe(record_id: bytes, created_at: int, size: int, metadata: RecordMetadata) -> Described:
    """The record as a DocumentReference answered by this node (id and Binary url: the
    record id; size and content type: what was stored)."""
    resource = _published(metadata) or _minimal(metadata)
    resource["resourceType"] = "DocumentReference"
    resource["id"] = record_id.hex()
    resource.setdefault("date", instant(created_at))
    if metadata.patient_ref:
        resource["subject"] = {
            "identifier": {"system": systems.PATIENT_ADDRESS, "value": metadata.patient_ref}
        }
    else:
        resource.pop("subject", None)
    content = resource["content"][:1]
    attachment = content[0].setdefault("attachment", {})
    attachment.update(url=f"Binary/{record_id.hex()}", size=size, contentType=metadata.content_type)
    resource["content"] = content
    attachment_creation = attachment.get("creation")
    categories = tuple(c for concept in resource.get("category") or [] for c in _codings(concept))
    return Described(
        record_id=record_id,
        created_at=created_at,
        resource=resource,
        patient=metadata.patient_ref.lower(),
        status=str(resource.get("status") or ""),
        date=_span(resource.get("date")),
        creation=_span(attachment_creation),
        types=_codings(resource.get("type")),
        categories=categories,
        cost=len(json.dumps(resource)) + 256,
    )
