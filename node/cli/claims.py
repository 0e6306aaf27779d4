"""Claim events in the CLI: what a patient discloses, and an insurer's `events` verbs.

`wallet attest --disclose` fills the disclosure from the record's metadata,
which her key opens here (the daemon hands the sealed part to her grant's P).
`events --as KEY` finds the records the key holds a grant of (stealth grants by
its view key, old-format grants to its public key), opens their record keys
here, asks the daemon for each record's entries and prints one verified event
per claim by the record's patient; `--follow` asks again every interval.
`events verify FILE` needs nothing but the file (docs/claims.md).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import nacl.signing

from node.cli import verbs, wallet
from node.cli.common import common
from node.control.client import ControlFailed, call
from node.http.fhir import systems
from protocol.claims import event as claims
from protocol.claims.collect import collect_records
from protocol.claims.disclosure import FIELDS, Disclosure, DisclosureError
from protocol.control import commands
from protocol.control.replies import (
    LedgerReply,
    PeerCertificateReply,
    RecordsReply,
    StealthGrantsReply,
)
from protocol.ledger.entries import InvalidEntry, decode_entry
from protocol.privacy import Opened, PersonKey
from storage.codec.crypt import SegmentCipher, open_sealed_key
from storage.codec.manifest import RecordMetadata, open_contents
from storage.errors import StorageError

MAX_SEEN = 100_000  # claim entries `--follow` remembers (the oldest are forgotten first)


# -- what she discloses ----------------------------------------------------------------


def disclose_fields(text: str) -> tuple[str, ...]:
    """`date,type` (the default), `date,type,provider`, or `none`."""
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    if chosen in {("none",), ()}:
        return ()
    unknown = [p for p in chosen if p not in FIELDS]
    if unknown:
        raise click.BadParameter(
            f"can disclose {', '.join(FIELDS)} or none; not {', '.join(unknown)}",
            param_hint="--disclose",
        )
    return chosen


def _document(metadata: RecordMetadata) -> dict[str, Any]:
    try:
        found = json.loads(metadata.extra.get(systems.DOCUMENT_KEY, "") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _first(value: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    return value[:256] if isinstance(value, str) and value.isprintable() else ""


def disclosure_of(
    metadata: RecordMetadata | None, created_at: int, chosen: tuple[str, ...], salt: bytes
) -> Disclosure:
    """The chosen fields from the doctor's metadata: a FHIR DocumentReference's service
    period (else its date) and type coding; a plain record's date and content type."""
    doc = _document(metadata) if metadata is not None else {}
    date, system, code, display, provider = "", "", "", "", ""
    if "date" in chosen:
        found = _text(_first(doc, "context", "period", "start")) or _text(doc.get("date"))
        moment = dt.datetime.fromtimestamp(created_at / 1000, dt.UTC)
        date = found[:10] if found else moment.strftime("%Y-%m-%d")
    if "type" in chosen:
        coding = _first(doc, "type", "coding", 0)
        if isinstance(coding, dict):
            system, code = _text(coding.get("system")), _text(coding.get("code"))
            display = _text(coding.get("display")) or _text(_first(doc, "type", "text"))
        elif metadata is not None:
            system, code = "urn:ietf:bcp:13", _text(metadata.content_type)  # a MIME type
    if "provider" in chosen:
        provider = _text(_first(doc, "custodian", "display")) or _text(
            _first(doc, "author", 0, "display")
        )
    try:
        return Disclosure(salt, date, system, code, display, provider)
    except DisclosureError as exc:
        raise click.ClickException(f"the record's metadata cannot be disclosed: {exc}") from None


def her_metadata(root: Path, opened: Opened, record_id: bytes) -> tuple[RecordMetadata | None, int]:
    """The record's metadata opened with her record key, and its ledger time."""
    reply = call(root, commands.ListRecords(opened.one_time_key.public), RecordsReply)
    for row in reply.records:
        if row.record_id != record_id:
            continue
        if row.sealed_metadata is None:
            return None, row.created_at
        try:
            metadata, _ = open_contents(SegmentCipher(opened.record_key, record_id),
                                        row.sealed_metadata)  # fmt: skip
        except StorageError:
            return None, row.created_at
        return metadata, row.created_at
    raise click.ClickException(f"the daemon does not list record {record_id.hex()[:16]} for her")


# -- the insurer's side ----------------------------------------------------------------


@dataclass
class Watcher:
    """The records a key holds grants of (their record keys), found incrementally."""

    root: Path
    person: PersonKey
    keys: dict[bytes, bytes] = field(default_factory=dict)  # record id -> record key
    cursor: int = 0
    seen: dict[bytes, None] = field(default_factory=dict)  # claim entry hashes, oldest first
    skipped: dict[bytes, str] = field(default_factory=dict)
    uncertified: dict[bytes, str] = field(default_factory=dict)  # of the last look
    certificates: dict[bytes, bytes | None] = field(default_factory=dict)  # of one look

    def refresh(self) -> None:
        self.certificates.clear()  # a peer met since the last look shows its certificate
        for _ in range(wallet.MAX_PAGES):
            reply = call(self.root, commands.StealthGrants(self.cursor), StealthGrantsReply)
            if self.cursor > reply.total:  # the daemon's order changed: scan again
                self.cursor = 0
                continue
            for mine in wallet.find_mine(self.person.view, iter(reply.rows)):
                opened = wallet.open_mine(self.person, mine)
                if opened is not None:
                    self.keys.setdefault(mine.row.record_id, opened.record_key)
            if reply.cursor <= self.cursor or reply.cursor >= reply.total:
                self.cursor = max(self.cursor, reply.cursor)
                break
            self.cursor = reply.cursor
        reader = nacl.signing.SigningKey(self.person.seed)
        listed = call(self.root, commands.ListRecords(bytes(reader.verify_key)), RecordsReply)
        for row in listed.records:  # old-format grants to her long-term key
            if row.sealed_key is not None and row.record_id not in self.keys:
                try:
                    self.keys[row.record_id] = open_sealed_key(row.sealed_key, reader)
                except StorageError:
                    continue

    def new_events(self) -> Iterator[claims.Verified]:
        self.refresh()
        rows = []
        for record_id in sorted(self.keys):
            reply = call(self.root, commands.Ledger(record_id, 0), LedgerReply)
            for row in reply.entries:
                try:
                    rows.append((decode_entry(row.raw), row.rejected))
                except InvalidEntry:
                    continue
        found = collect_records(rows, self.keys, self._certificate)
        self.skipped.update(found.skipped)
        self.uncertified = found.uncertified
        for verified in found.events:
            if verified.claim_entry not in self.seen:
                self._remember(verified.claim_entry)
                yield verified

    def _certificate(self, owner: bytes) -> bytes | None:
        """The owner's certificate as the daemon last saw it (None: never met)."""
        if owner not in self.certificates:
            reply = call(self.root, commands.PeerCertificate(owner), PeerCertificateReply)
            self.certificates[owner] = reply.certificate
        return self.certificates[owner]

    def _remember(self, claim: bytes) -> None:
        self.seen[claim] = None
        while len(self.seen) > MAX_SEEN:
            del self.seen[next(iter(self.seen))]


def _shown(verified: claims.Verified, fhir: bool) -> dict[str, Any]:
    if not fhir:
        return claims.document(verified)
    from node.http.fhir.claim import render_claim  # noqa: PLC0415 - FHIR models only if asked

    return render_claim(verified)


def _print(verified: claims.Verified, as_json: bool, fhir: bool, why: str | None) -> None:
    if as_json or fhir:
        click.echo(json.dumps(_shown(verified, fhir), sort_keys=True))
        if why is not None:  # the event's `certificate` is null; stderr says why
            click.echo(f"event {verified.hash.hex()[:16]}: no certificate: {why}", err=True)
        return
    d = verified.event.disclosure
    kind = " ".join(x for x in (d.type_code, d.type_display) if x) or "-"
    click.echo(
        f"claim {verified.hash.hex()[:16]}  record {verified.record_id.hex()[:16]}"
        f"  provider {verified.site or verified.provider.hex()[:16]}"
        f"  date {d.service_date or '-'}  type {kind}"
        + (f"  (no certificate: {why})" if why is not None else "")
    )


@click.group("events", invoke_without_command=True)
@click.option(
    "--as",
    "as_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The insurer's key file: its grants say which records' claims it receives.",
)
@click.option("--follow", is_flag=True, help="Keep printing new events (Ctrl-C ends).")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between looks at the ledger with --follow.")  # fmt: skip
@click.option("--fhir", is_flag=True, help="Print FHIR R4 Claim resources (JSON lines).")
@click.pass_context
@common
def events(
    ctx: click.Context,
    *,
    as_key: Path | None,
    follow: bool,
    interval: float,
    fhir: bool,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Claim events for the records a key holds grants of (`events verify FILE` checks one)."""
    if ctx.invoked_subcommand is not None:
        return
    if as_key is None:
        raise click.UsageError("give --as KEYFILE (the insurer's key), or `events verify FILE`")
    person = wallet.load_person(as_key)
    watcher = Watcher(verbs._root(data_dir), person)
    try:
        while True:
            for verified in watcher.new_events():
                _print(verified, as_json, fhir, watcher.uncertified.get(verified.claim_entry))
            sys.stdout.flush()
            if not follow:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    except ControlFailed as exc:
        raise click.ClickException(str(exc)) from None


@events.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, allow_dash=True))
@click.option("--authority", default=None,
              help="The network's authority key (64 hex digits): the provider's certificate"
              " must be by it.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print what the event proves as JSON.")
def events_verify(*, file: str, authority: str | None, as_json: bool) -> None:
    """Verify claim events offline (one per line): exit 0 if all are valid, 1 if not."""
    key = verbs.hex_bytes(authority, "--authority") if authority else None
    with click.open_file(file, "rb") as source:
        data = source.read(claims.MAX_EVENT_TEXT * 1000)
    lines = [line for line in data.split(b"\n") if line]
    if not lines:
        click.echo("invalid: no event in the file", err=True)
        sys.exit(1)
    failed = False
    for number, line in enumerate(lines, 1):
        try:
            verified = claims.decode(line, authority=key)
        except claims.InvalidEvent as exc:
            failed = True
            shown: dict[str, Any] = {"line": number, "valid": False, "reason": str(exc)}
        else:
            shown = {"line": number, "valid": True, "hash": verified.hash.hex(),
                     "provider": verified.provider.hex(), "site": verified.site,
                     "record_id": verified.record_id.hex()}  # fmt: skip
        if as_json:
            click.echo(json.dumps(shown))
        elif shown["valid"]:
            click.echo(f"line {number}: valid, event {shown['hash']}")
        else:
            click.echo(f"line {number}: invalid: {shown['reason']}", err=True)
    if failed:
        sys.exit(1)


COMMANDS = [events]
