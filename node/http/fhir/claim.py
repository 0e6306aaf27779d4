"""A claim event as a FHIR R4 Claim an insurer can import.

The patient is named by the one-time key P that signed (system
`urn:medvault:one-time-key`), never by her address: the Claim links to her only
for someone holding her view key, as the ledger does. medvault moves no money:
the Claim is the verifiable trigger, its supportingInfo cites the event's hash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir.resources.R4B.claim import Claim

from node.http.fhir import systems
from protocol.claims.event import Verified

ONE_TIME_KEY = "urn:medvault:one-time-key"  # a stealth grant's one-time key P (32 bytes, hex)
CLAIM_EVENT = "urn:medvault:claim-event"  # a claim event's hash (protocol.claims.event)
_CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
_INFO = "http://terminology.hl7.org/CodeSystem/claiminformationcategory"


def _instant(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def _service(verified: Verified) -> dict[str, Any]:
    d = verified.event.disclosure
    if not (d.type_code or d.type_display):
        return {"text": "not disclosed"}
    coding = {k: v for k, v in (("system", d.type_system), ("code", d.type_code),
                                ("display", d.type_display)) if v}  # fmt: skip
    return {"coding": [coding], **({"text": d.type_display} if d.type_display else {})}


def render_claim(verified: Verified) -> dict[str, Any]:
    """The event as a Claim resource (JSON), validated against the R4B model."""
    d = verified.event.disclosure
    event_id = {"system": CLAIM_EVENT, "value": verified.hash.hex()}
    provider: dict[str, Any] = {
        "identifier": {"system": systems.NODE_KEY, "value": verified.provider.hex()}
    }
    shown = verified.site or d.provider_display
    if shown:
        provider["display"] = shown
    item: dict[str, Any] = {"sequence": 1, "productOrService": _service(verified)}
    if d.service_date:
        item["servicedDate"] = d.service_date
    resource: dict[str, Any] = {
        "resourceType": "Claim",
        "identifier": [event_id],
        "status": "active",
        "use": "claim",
        "type": {"coding": [{"system": _CLAIM_TYPE, "code": "professional"}]},
        "patient": {"identifier": {"system": ONE_TIME_KEY, "value": verified.patient_key.hex()}},
        "created": _instant(verified.attested_at),
        "provider": provider,
        "priority": {"coding": [{"system": _PRIORITY, "code": "normal"}]},
        "insurance": [
            {"sequence": 1, "focal": True, "coverage": {"display": "the insurer's own policy"}}
        ],
        "supportingInfo": [
            {
                "sequence": 1,
                "category": {"coding": [{"system": _INFO, "code": "info"}]},
                "valueReference": {"identifier": event_id, "display": "medvault claim event"},
            }
        ],
        "item": [item],
    }
    Claim.model_validate(resource)
    return resource
