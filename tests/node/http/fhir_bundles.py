"""ITI-65 Bundles as an EHR sends them, for the FHIR tests (in memory and on daemons)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from typing import Any

from node.http.fhir import systems
from protocol.privacy import PersonKey

LOINC = "http://loinc.org"
DISCHARGE = (LOINC, "18842-5")  # discharge summary
LAB = (LOINC, "11502-2")  # laboratory report
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
FHIR = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


def new_address() -> str:
    """A patient's address (hex), as `medvault keys address` prints it."""
    return PersonKey(os.urandom(32)).address.to_bytes().hex()


def small_pdf(payload: int = 2000) -> bytes:
    """A minimal valid PDF 1.4 with random bytes in a stream (a document, not text)."""
    stream = os.urandom(payload)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def grantee(system: str, value: str) -> dict[str, Any]:
    return {
        "url": systems.GRANTEE_EXTENSION,
        "valueIdentifier": {"system": system, "value": value},
    }


def document_reference(
    data: bytes,
    patient: str,
    *,
    binary_url: str = "urn:uuid:binary-1",
    content_type: str = "application/pdf",
    date: str = "2024-03-15T10:30:00Z",
    type_code: tuple[str, str] = DISCHARGE,
    title: str = "discharge.pdf",
    grantees: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.3.{len(data)}"},
        "type": {"coding": [{"system": type_code[0], "code": type_code[1]}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "47039-3"}]}],
        "subject": {"identifier": {"system": systems.PATIENT_ADDRESS, "value": patient}},
        "date": date,
        "description": "Discharge summary, cardiology",
        "securityLabel": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        "extension": list(grantees),
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "url": binary_url,
                    "size": len(data),
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                    "title": title,
                    "creation": date,
                }
            }
        ],
        "context": {"period": {"start": "2024-03-10", "end": date}},
    }


def binary_entry(
    data: bytes, url: str = "urn:uuid:binary-1", content_type: str = "application/pdf"
) -> dict[str, Any]:
    return {
        "fullUrl": url,
        "resource": {
            "resourceType": "Binary",
            "contentType": content_type,
            "data": base64.b64encode(data).decode(),
        },
        "request": {"method": "POST", "url": "Binary"},
    }


def provide_bundle(
    data: bytes, patient: str, *, submission_set: bool = True, **reference: Any
) -> dict[str, Any]:
    """A transaction Bundle: a SubmissionSet List, a DocumentReference and its Binary."""
    entries: list[dict[str, Any]] = []
    if submission_set:
        entries.append(
            {
                "fullUrl": "urn:uuid:submission-1",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "entry": [{"item": {"reference": "urn:uuid:docref-1"}}],
                },
                "request": {"method": "POST", "url": "List"},
            }
        )
    entries.append(
        {
            "fullUrl": "urn:uuid:docref-1",
            "resource": document_reference(data, patient, **reference),
            "request": {"method": "POST", "url": "DocumentReference"},
        }
    )
    content_type = reference.get("content_type", "application/pdf")
    entries.append(binary_entry(data, content_type=content_type))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def record_ids(response: dict[str, Any]) -> list[str]:
    """The record ids of a transaction-response's DocumentReference locations."""
    return [
        e["response"]["location"].split("/", 1)[1]
        for e in response["entry"]
        if e["response"].get("location", "").startswith("DocumentReference/")
    ]
