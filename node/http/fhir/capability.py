"""GET /fhir/metadata: the CapabilityStatement (FHIR R4) of this node's MHD actors,
Document Recipient (ITI-65) and Document Responder (ITI-67, ITI-68). Public, as FHIR
servers publish theirs: it says what is supported, nothing about any record."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.http.errors import FHIR_JSON
from node.http.fhir import systems

_SEARCH_PARAMS = (
    ("patient", "reference", "Patient/<address hex>, or the address hex alone"),
    ("patient.identifier", "token", f"{systems.PATIENT_ADDRESS}|<address hex>"),
    ("_id", "token", "the record id (hex)"),
    ("status", "token", "current | superseded | entered-in-error"),
    ("type", "token", "system|code, code, |code or system|"),
    ("category", "token", "system|code, code, |code or system|"),
    ("date", "date", "DocumentReference.date, prefixes eq ne gt lt ge le"),
    ("creation", "date", "content.attachment.creation, prefixes eq ne gt lt ge le"),
)


def capability_statement() -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2025-01-01",
        "kind": "instance",
        "instantiates": [systems.MHD_RECIPIENT, systems.MHD_RESPONDER],
        "software": {"name": "medvault"},
        "implementation": {
            "description": "medvault node: IHE MHD Document Recipient and Document Responder"
        },
        "fhirVersion": systems.FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "ITI-65 Provide Document Bundle (POST /fhir), ITI-67 Find"
                " Document References, ITI-68 Retrieve Document. Every request but this one"
                " needs a bearer token (write: ITI-65; read: ITI-67, ITI-68).",
                "security": {
                    "description": "Authorization: Bearer <token from `medvault http token"
                    " new`>; 401 without or with an unknown token, 403 for a weaker scope"
                },
                "interaction": [{"code": "transaction"}],
                "resource": [
                    {
                        "type": "DocumentReference",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": name, "type": kind, "documentation": doc}
                            for name, kind, doc in _SEARCH_PARAMS
                        ],
                    },
                    {"type": "Binary", "interaction": [{"code": "read"}]},
                ],
            }
        ],
    }


async def metadata(request: Request) -> Response:
    return JSONResponse(capability_statement(), media_type=FHIR_JSON)
