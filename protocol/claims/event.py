"""A claim event: the signed entries that prove a patient attested a record, and what
she disclosed, checkable offline by anyone from those bytes alone.

An event holds three raw signed ledger entries (the owner's `record`, the
owner's `sgrant` making the claimer's one-time key P a patient (co-owner) grant
of that record, and P's `claim`), the opened disclosure with its salt, and
optionally the owner's membership certificate. Its text form is canonical
JSON (sorted keys, no spaces, ASCII) that also repeats, for a reader, what
the entries say (provider, record id, manifest hash, P, time): `decode`
accepts only the exact bytes `encode` gives for the event it parsed, so a
field that disagrees with the entries, a second spelling of one value, or
any altered byte is refused. Pure: no clock (certificate validity is judged
at the record's own time).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from protocol.claims.disclosure import Disclosure, DisclosureError, commitment
from protocol.errors import ProtocolError
from protocol.ledger.entries import (
    ClaimBody,
    Entry,
    EntryType,
    InvalidEntry,
    RecordBody,
    StealthGrantBody,
    decode_entry,
)
from protocol.ledger.state import record_problem
from protocol.membership import certificate as certs

KIND = "medvault-claim"
VERSION = 1
MAX_EVENT_TEXT = 32_768  # bytes: three entries of at most 4096, base64, and the rest
_HASH_TAG = b"medvault/claim-event/v1"


class InvalidEvent(ProtocolError):
    """An event that does not prove what it says; the message is the reason."""


@dataclass(frozen=True)
class ClaimEvent:
    record: bytes  # the owner's signed record entry
    grant: bytes  # the owner's signed sgrant naming the claimer's P as a patient grant
    claim: bytes  # P's signed claim entry
    disclosure: Disclosure
    certificate: bytes | None = None  # the owner's membership certificate, encoded


@dataclass(frozen=True)
class Verified:
    """What a valid event proves."""

    event: ClaimEvent
    provider: bytes  # the owning hospital's node key
    site: str | None  # from the certificate, when the event carries one
    site_authority: bytes | None  # who certified the site
    record_id: bytes
    manifest_hash: bytes
    patient_key: bytes  # the one-time key P that signed (links to her only with her view key)
    attested_at: int  # the claim entry's time (ms, on the minute)
    claim_entry: bytes  # the claim entry's hash
    hash: bytes  # the event's hash (of its canonical text)


def _entry(raw: bytes, kind: EntryType, what: str) -> Entry:
    try:
        entry = decode_entry(raw)
    except InvalidEntry as exc:
        raise InvalidEvent(f"the {what} entry is invalid: {exc}") from None
    if entry.type is not kind:
        raise InvalidEvent(f"the {what} entry is a {entry.type} entry, not {kind}")
    return entry


def verify(event: ClaimEvent, *, authority: bytes | None = None) -> Verified:
    """InvalidEvent unless the entries and disclosure prove the claim; with `authority`,
    also unless the event carries the owner's certificate by that authority."""
    record = _entry(event.record, EntryType.RECORD, "record")
    grant = _entry(event.grant, EntryType.SGRANT, "grant")
    claim = _entry(event.claim, EntryType.CLAIM, "claim")
    rbody, gbody, cbody = record.body, grant.body, claim.body
    assert isinstance(rbody, RecordBody) and isinstance(gbody, StealthGrantBody)
    assert isinstance(cbody, ClaimBody)
    problem = record_problem(record)  # the author is the owner, the id binds the owner
    if problem is not None:
        raise InvalidEvent(f"the record entry is invalid: {problem}")
    if grant.author != rbody.owner or gbody.record_id != rbody.record_id:
        raise InvalidEvent("the grant is not the record owner's grant of this record")
    if not gbody.patient:
        raise InvalidEvent("the grant is no patient (co-owner) grant: the claimer is not her")
    if claim.author != gbody.one_time:
        raise InvalidEvent("the claim is not signed by the patient grant's one-time key")
    if cbody.record_id != rbody.record_id:
        raise InvalidEvent("the claim names another record")
    if cbody.manifest_hash != rbody.manifest_hash:
        raise InvalidEvent("the claim attests another manifest than the record's")
    if commitment(event.disclosure) != cbody.disclosure:
        raise InvalidEvent("the disclosed fields are not the ones the claim signed")
    site, site_authority = _site(event.certificate, rbody.owner, record.timestamp, authority)
    found = Verified(event, rbody.owner, site, site_authority, rbody.record_id,
                     rbody.manifest_hash, claim.author, claim.timestamp, claim.hash,
                     b"")  # fmt: skip
    text = _canonical(_document(event, found))
    return dataclasses.replace(found, hash=_text_hash(text))


def _site(
    raw: bytes | None, owner: bytes, at_ms: int, authority: bytes | None
) -> tuple[str | None, bytes | None]:
    if raw is None:
        if authority is not None:
            raise InvalidEvent("the event carries no certificate to check the provider's site")
        return None, None
    try:
        cert = certs.decode(raw)
        certs.check(cert, node_key=owner, authorities=[cert.authority], now_ms=at_ms)
    except certs.CertificateError as exc:
        raise InvalidEvent(f"the provider's certificate is invalid: {exc}") from None
    if authority is not None and cert.authority != authority:
        raise InvalidEvent("the provider's certificate is not signed by that authority")
    return cert.site, cert.authority


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidEvent(f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent(f"{what} is not base64") from None


def _document(event: ClaimEvent, verified: Verified) -> dict[str, Any]:
    d = event.disclosure
    return {
        "kind": KIND,
        "version": VERSION,
        "provider": {"node_key": verified.provider.hex(), "site": verified.site},
        "record_id": verified.record_id.hex(),
        "manifest_hash": verified.manifest_hash.hex(),
        "patient_key": verified.patient_key.hex(),
        "attested_at": verified.attested_at,
        "disclosed": {
            "salt": d.salt.hex(),
            "service_date": d.service_date,
            "type": {"system": d.type_system, "code": d.type_code, "display": d.type_display},
            "provider_display": d.provider_display,
        },
        "entries": {
            "record": _b64(event.record),
            "grant": _b64(event.grant),
            "claim": _b64(event.claim),
        },
        "certificate": None if event.certificate is None else _b64(event.certificate),
    }


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _text_hash(text: bytes) -> bytes:
    """The event's id: BLAKE2b-256 of its canonical text (what a FHIR Claim cites)."""
    return hashlib.blake2b(text, digest_size=32, key=_HASH_TAG).digest()


def encode(event: ClaimEvent) -> bytes:
    """The canonical text of a valid event (InvalidEvent if it is not valid)."""
    verified = verify(event)
    return _canonical(_document(event, verified))


def document(verified: Verified) -> dict[str, Any]:
    """The event as a JSON object (what `encode` serialises), with its hash."""
    return {**_document(verified.event, verified), "hash": verified.hash.hex()}


def decode(text: bytes, *, authority: bytes | None = None) -> Verified:
    """Parse and verify an event's canonical text; InvalidEvent names what is wrong."""
    if len(text) > MAX_EVENT_TEXT:
        raise InvalidEvent(f"an event is at most {MAX_EVENT_TEXT} bytes")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidEvent("not JSON") from None
    event = _parse(value)
    verified = verify(event, authority=authority)
    if _canonical(_document(event, verified)) != text:
        raise InvalidEvent(
            "altered: the text is not the canonical form of what its signed entries prove"
        )
    return verified


def _parse(value: Any) -> ClaimEvent:
    if not isinstance(value, dict) or value.get("kind") != KIND:
        raise InvalidEvent(f"not a {KIND} event")
    if value.get("version") != VERSION:
        raise InvalidEvent(f"unsupported event version {value.get('version')!r}")
    entries, disclosed = value.get("entries"), value.get("disclosed")
    if not isinstance(entries, dict) or not isinstance(disclosed, dict):
        raise InvalidEvent("an event has entries and disclosed fields")
    kind = disclosed.get("type")
    if not isinstance(kind, dict):
        raise InvalidEvent("disclosed type must be an object")
    salt = disclosed.get("salt")
    try:
        disclosure = Disclosure(
            bytes.fromhex(salt) if isinstance(salt, str) else b"",
            disclosed.get("service_date"),  # type: ignore[arg-type]  # checked by Disclosure
            kind.get("system"),  # type: ignore[arg-type]
            kind.get("code"),  # type: ignore[arg-type]
            kind.get("display"),  # type: ignore[arg-type]
            disclosed.get("provider_display"),  # type: ignore[arg-type]
        )
    except (DisclosureError, ValueError) as exc:
        raise InvalidEvent(f"disclosed fields: {exc}") from None
    cert = value.get("certificate")
    return ClaimEvent(
        _unb64(entries.get("record"), "the record entry"),
        _unb64(entries.get("grant"), "the grant entry"),
        _unb64(entries.get("claim"), "the claim entry"),
        disclosure,
        None if cert is None else _unb64(cert, "the certificate"),
    )
