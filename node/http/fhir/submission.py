"""ITI-65: a Provide Document Bundle checked and turned into documents to store.

Every check runs before anything is stored, so a Bundle is refused whole
with a 400 that names the entry and the problem. fhir.resources validates
each resource's shape; the rules of MHD and of medvault are checked here:
the Bundle is a transaction, each DocumentReference points (attachment.url)
at exactly one Binary of the Bundle and every Binary is used once, the
attachment's contentType, size and SHA-1 hash agree with the Binary, the
patient is a medvault address, and grantees are keys or addresses.
Binary data is decoded here, strictly (the library's decoder skips junk).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from node.http.errors import ApiError
from node.http.fhir import systems
from protocol.privacy import Address, PrivacyError
from storage.codec.crypt import check_recipient
from storage.errors import KeyFormatError

MAX_ENTRIES = 64  # a Bundle of more is refused before any resource is validated
MAX_GRANTEES = 64  # per DocumentReference
MAX_KEPT_JSON = 48 * 1024  # the DocumentReference kept in the record's encrypted metadata
ACCEPTED = ("DocumentReference", "Binary", "List", "Patient")
STATUSES = ("current", "superseded", "entered-in-error")
ADDRESS_SIZE = 66
KEY_SIZE = 32


@dataclass(frozen=True)
class Document:
    """One DocumentReference of the Bundle with its Binary's bytes, ready to store."""

    entry: int  # the DocumentReference's entry index
    binary_entry: int
    data: bytes
    content_type: str
    title: str
    patient: bytes  # her address
    grantees: tuple[bytes, ...]
    kept: str  # the DocumentReference as JSON (no data, no url): encrypted metadata


@dataclass(frozen=True)
class Submission:
    documents: tuple[Document, ...]
    kinds: tuple[str, ...]  # each entry's resourceType, in order (for the response)


def invalid(message: str, code: str = "invalid") -> ApiError:
    return ApiError(400, code, message)


def strict_base64(text: object, where: str) -> bytes:
    """base64Binary as FHIR defines it (whitespace allowed), nothing else."""
    if not isinstance(text, str):
        raise invalid(f"{where}: data must be a base64 string")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{where}: data is not valid base64 ({exc})") from None


def _raw_entries(value: Any) -> list[Any]:
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        kind = value.get("resourceType") if isinstance(value, dict) else type(value).__name__
        raise invalid(f"expected a FHIR Bundle, got {str(kind)[:60]!r}", "structure")
    if value.get("type") != "transaction":
        raise invalid(
            f"Bundle.type must be 'transaction' (ITI-65), not {str(value.get('type'))[:40]!r}"
        )
    entries = value.get("entry")
    if not isinstance(entries, list) or not entries:
        raise invalid("the Bundle has no entries")
    if len(entries) > MAX_ENTRIES:
        raise invalid(f"the Bundle has {len(entries)} entries, at most {MAX_ENTRIES} are taken")
    return entries


def _without_data(value: Any) -> tuple[dict[str, Any], dict[int, bytes]]:
    """The Bundle with each Binary's data taken out (and decoded strictly)."""
    datas: dict[int, bytes] = {}
    entries = []
    for index, raw in enumerate(_raw_entries(value)):
        resource = raw.get("resource") if isinstance(raw, dict) else None
        if not isinstance(resource, dict):
            raise invalid(f"entry {index} has no resource", "structure")
        kind = resource.get("resourceType")
        if kind not in ACCEPTED:
            raise invalid(
                f"entry {index}: a {str(kind)[:60]!r} is not accepted in an ITI-65 Bundle"
                f" (only {', '.join(ACCEPTED)})",
                "not-supported",
            )
        if kind == "Binary":
            if "data" not in resource:
                raise invalid(f"entry {index}: the Binary has no data")
            datas[index] = strict_base64(resource["data"], f"entry {index} (Binary)")
            resource = {k: v for k, v in resource.items() if k != "data"}
            entries.append({**raw, "resource": resource})
        else:
            entries.append(raw)
    return {**value, "entry": entries}, datas


def _validated(value: dict[str, Any]) -> Bundle:
    try:
        return Bundle.model_validate(value)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()[:3]
        ]
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise invalid("the Bundle is not valid FHIR R4: " + "; ".join(problems) + more) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(f"the Bundle is not valid FHIR R4: {str(exc)[:200]}") from None


def _address(text: object, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != ADDRESS_SIZE:
        raise invalid(f"{where}: the value must be a medvault address (132 hex digits)")
    try:
        Address.from_bytes(raw)
    except PrivacyError as exc:
        raise invalid(f"{where}: not a usable address ({exc})") from None
    return raw


def _patient_of(reference: DocumentReference, patients: Mapping[str, Patient], where: str) -> bytes:
    """Her address: subject.identifier, or the identifier of a Patient in the Bundle."""
    subject = reference.subject
    if subject is None:
        raise invalid(f"{where}: subject is required (the patient, as her medvault address)")
    identifiers: list[Identifier] = []
    if subject.identifier is not None:
        identifiers = [subject.identifier]
    elif subject.reference is not None and subject.reference in patients:
        identifiers = list(patients[subject.reference].identifier or [])
    elif subject.reference is not None:
        raise invalid(
            f"{where}: subject {subject.reference[:80]!r} is no Patient of this Bundle; give"
            f" subject.identifier with system {systems.PATIENT_ADDRESS}"
        )
    ours = [i for i in identifiers if i.system == systems.PATIENT_ADDRESS]
    if not ours:
        found = ", ".join(sorted({str(i.system) for i in identifiers})) or "none"
        raise invalid(
            f"{where}: the patient needs an identifier with system {systems.PATIENT_ADDRESS}"
            f" (found: {found[:200]})"
        )
    return _address(ours[0].value, f"{where}: subject identifier")


def _grantees(reference: DocumentReference, where: str) -> tuple[bytes, ...]:
    """The keys and addresses the grantee extensions name (checked, without repeats)."""
    found: dict[bytes, None] = {}
    for extension in reference.extension or []:
        if extension.url != systems.GRANTEE_EXTENSION:
            continue
        identifier = extension.valueIdentifier
        here = f"{where}: grantee extension"
        if identifier is None or identifier.system not in (systems.NODE_KEY, systems.PERSON_KEY):
            raise invalid(
                f"{here} needs a valueIdentifier with system {systems.NODE_KEY} or"
                f" {systems.PERSON_KEY}"
            )
        sizes = (KEY_SIZE,) if identifier.system == systems.NODE_KEY else (KEY_SIZE, ADDRESS_SIZE)
        try:
            raw = bytes.fromhex(identifier.value or "")
        except ValueError:
            raw = b""
        if len(raw) not in sizes:
            hex_digits = " or ".join(str(2 * s) for s in sizes)
            raise invalid(f"{here}: {identifier.system} values are {hex_digits} hex digits")
        try:
            if len(raw) == ADDRESS_SIZE:
                Address.from_bytes(raw)
            else:
                check_recipient(raw)
        except (PrivacyError, KeyFormatError) as exc:
            raise invalid(f"{here}: not a usable key ({exc})") from None
        found[raw] = None
        if len(found) > MAX_GRANTEES:
            raise invalid(f"{where}: at most {MAX_GRANTEES} grantees")
    return tuple(found)


def _media(value: str) -> str:
    return value.partition(";")[0].strip().lower()


def _check_attachment(
    reference: DocumentReference, data: bytes, content_type: str, where: str
) -> None:
    attachment = reference.content[0].attachment
    if attachment.data is not None:
        raise invalid(f"{where}: the document goes in a Binary, not in attachment.data")
    declared = attachment.contentType
    if declared is not None and _media(declared) != _media(content_type):
        raise invalid(
            f"{where}: attachment.contentType {declared[:80]!r} is not the"
            f" Binary's {content_type[:80]!r}"
        )
    if attachment.size is not None and int(attachment.size) != len(data):
        raise invalid(
            f"{where}: attachment.size is {attachment.size}, the Binary has {len(data)} bytes"
        )
    if attachment.hash is not None and bytes(attachment.hash) != hashlib.sha1(data).digest():
        raise invalid(f"{where}: attachment.hash is not the SHA-1 of the Binary's data")


def _kept(reference: DocumentReference, patient: bytes, data: bytes, content_type: str) -> str:
    """The DocumentReference as kept (encrypted): subject as her identifier, the attachment
    described by what was stored, no url (a retrieve names the record), no id."""
    kept = reference.model_dump(mode="json", exclude_none=True)
    kept.pop("id", None)
    kept["subject"] = {"identifier": {"system": systems.PATIENT_ADDRESS, "value": patient.hex()}}
    attachment = kept["content"][0]["attachment"]
    attachment.pop("url", None)
    attachment["contentType"] = content_type
    attachment["size"] = len(data)
    attachment["hash"] = base64.b64encode(hashlib.sha1(data).digest()).decode()
    text = json.dumps(kept, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_KEPT_JSON:
        raise invalid(
            f"the DocumentReference is {len(text.encode())} bytes of JSON without its data;"
            f" at most {MAX_KEPT_JSON} are kept"
        )
    return text


def _index(entries: list[BundleEntry]) -> dict[str, int]:
    """Entry index by fullUrl and by Type/id: what references may name."""
    index: dict[str, int] = {}
    for position, entry in enumerate(entries):
        resource = entry.resource
        if entry.fullUrl:
            index[entry.fullUrl] = position
        if resource is not None and resource.id:
            index[f"{resource.get_resource_type()}/{resource.id}"] = position
    return index


def parse_submission(value: Any) -> Submission:
    """The documents of an ITI-65 Bundle (parsed JSON), or a 400 naming the problem."""
    stripped, datas = _without_data(value)
    bundle = _validated(stripped)
    entries = list(bundle.entry or [])
    kinds = tuple(str(e.resource.get_resource_type()) if e.resource else "" for e in entries)
    index = _index(entries)
    patients: dict[str, Patient] = {}
    for url, pos in index.items():
        resource = entries[pos].resource
        if isinstance(resource, Patient):
            patients[url] = resource
    used: dict[int, int] = {}
    documents = []
    for position, entry in enumerate(entries):
        where = f"entry {position} ({kinds[position]})"
        if entry.request is None:
            raise invalid(f"{where}: a transaction entry needs request (method and url)")
        if kinds[position] in ("DocumentReference", "Binary") and entry.request.method != "POST":
            raise invalid(f"{where}: only POST (create) is supported, not {entry.request.method}")
        reference = entry.resource
        if not isinstance(reference, DocumentReference):
            continue
        if reference.status not in STATUSES:
            raise invalid(f"{where}: status must be one of {', '.join(STATUSES)}")
        if len(reference.content) != 1:
            raise invalid(f"{where}: exactly one content (one document per DocumentReference)")
        target = index.get(str(reference.content[0].attachment.url or ""))
        if target is None or kinds[target] != "Binary":
            raise invalid(f"{where}: attachment.url must name a Binary entry of this Bundle")
        if target in used:
            raise invalid(f"{where}: the Binary of entry {target} is used by entry {used[target]}")
        used[target] = position
        binary = entries[target].resource
        assert isinstance(binary, Binary)
        content_type = str(binary.contentType or "")
        data = datas[target]
        _check_attachment(reference, data, content_type, where)
        patient = _patient_of(reference, patients, where)
        grantees = tuple(g for g in _grantees(reference, where) if g != patient)
        documents.append(
            Document(
                entry=position,
                binary_entry=target,
                data=data,
                content_type=content_type,
                title=str(reference.content[0].attachment.title or "")[:255],
                patient=patient,
                grantees=grantees,
                kept=_kept(reference, patient, data, content_type),
            )
        )
    unused = sorted(set(datas) - set(used))
    if unused:
        raise invalid(f"entry {unused[0]} (Binary) belongs to no DocumentReference")
    if not documents:
        raise invalid("the Bundle has no DocumentReference")
    return Submission(tuple(documents), kinds)
