"""`medvault emergency`: break-glass access (docs/emergency.md).

`request --view-key FILE` finds the patient's records here, with her view key
(the records where a stealth grant to her is a patient, i.e. co-owner, grant:
the view key recognises them, it opens nothing), and asks this node's daemon
to ask each record's owner node. `review`, `signoff`, `pending`, `approve` and
`deny` are the owning hospital's operator verbs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from node.cli import verbs, wallet
from node.cli.common import common, printable
from node.control.client import call
from protocol.control import commands
from protocol.control.replies import (
    EmergencyDecided,
    EmergencyOutcomes,
    EmergencyPendingReply,
    EmergencyReviewReply,
    Written,
)
from protocol.emergency import sealing
from protocol.emergency.review import accesses
from protocol.emergency.sealing import MAX_REASON_CHARS
from protocol.ledger.entries import Entry, decode_entry


@click.group()
def emergency() -> None:
    """Break-glass access to a patient's records held by other hospitals."""


def _reason(value: str) -> str:
    text = value.strip()
    if not 0 < len(text) <= MAX_REASON_CHARS or not text.isprintable():
        raise click.BadParameter(
            f"give 1..{MAX_REASON_CHARS} printable characters", param_hint="--reason"
        )
    return text


@emergency.command("request")
@click.option(
    "--view-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The patient's view-only key (`medvault keys export-view`): finds her records.",
)
@click.option(
    "--reason", required=True, help="Why (sealed: only the record's key holders read it)."
)
@click.option("--duration", default="12h", show_default=True, help="45s, 90m, 12h, 2d.")
@common
def emergency_request(
    *, view_key: Path, reason: str, duration: str, data_dir: Path | None, as_json: bool
) -> None:
    """Ask the owners of her records for time-limited access for this node."""
    text = _reason(reason)
    seconds = verbs.duration_s(duration, "--duration")
    if seconds <= 0:
        raise click.BadParameter("give 1s or more", param_hint="--duration")
    view, _ = wallet.load_view(view_key)
    root = verbs._root(data_dir)
    mine = wallet.find_mine(view, wallet.stealth_rows(root))
    records = list(dict.fromkeys(m.row.record_id for m in mine if m.row.patient and m.row.current))
    if not records:
        raise click.ClickException("this view key finds no record she co-owns on this ledger")
    rows: list[dict[str, Any]] = []
    for start in range(0, len(records), commands.MAX_EMERGENCY_RECORDS):
        batch = tuple(records[start : start + commands.MAX_EMERGENCY_RECORDS])
        reply = call(
            root, commands.EmergencyRequest(batch, text, seconds * 1000), EmergencyOutcomes
        )
        rows += [
            {
                "record_id": o.record_id.hex(),
                "owner": o.owner.hex(),
                "status": o.status,
                "code": o.code,
                "detail": o.detail,
                "expires_at": o.expires_at,
                "request_id": o.request_id,
            }
            for o in reply.rows
        ]

    def show(shown: dict[str, Any]) -> None:
        for r in shown["records"]:
            if r["status"] == "granted":
                what = f"granted until {verbs.when(r['expires_at'])}"
            elif r["status"] == "queued":
                what = f"queued for approval (request {r['request_id']})"
            else:
                what = f"{r['status']}: {r['code'] or '-'} {r['detail']}".rstrip()
            click.echo(f"{r['record_id'][:16]}  owner {r['owner'][:16]}  {what}")

    verbs.emit({"records": rows}, as_json, show)


@emergency.command("review")
@click.option("--all", "show_all", is_flag=True, help="Also the accesses signed off already.")
@common
def emergency_review(*, show_all: bool, data_dir: Path | None, as_json: bool) -> None:
    """Emergency accesses to this node's records, flagged until signed off."""
    root = verbs._root(data_dir)
    reply = call(root, commands.EmergencyReview(show_all), EmergencyReviewReply)
    rows = [
        {
            "id": r.emergency.hex(),
            "record_id": r.record_id.hex(),
            "requester": r.requester.hex(),
            "site": r.site,
            "reason": r.reason,
            "granted_at": r.granted_at,
            "expires_at": r.expires_at,
            "signed_off": bool(r.signed_off_at),
            "signed_off_at": r.signed_off_at,
            "note": r.note,
        }
        for r in reply.rows
    ]

    def show(shown: dict[str, Any]) -> None:
        for r in shown["accesses"]:
            state = "signed off" if r["signed_off"] else "FLAGGED"
            click.echo(
                f"{r['id'][:16]}  {state:10}  record {r['record_id'][:16]}  by"
                f" {r['requester'][:16]} ({r['site'] or 'no certified site'})"
                f"  granted {verbs.when(r['granted_at'])}  until {verbs.when(r['expires_at'])}"
            )
            click.echo(f"    reason: {printable(r['reason'])}")
            if r["note"]:
                click.echo(f"    note: {printable(r['note'])}")

    verbs.emit({"accesses": rows}, as_json, show)


@emergency.command("signoff")
@click.argument("emergency_id")
@click.option("--note", default="", help="What the review found (sealed like the reason).")
@common
def emergency_signoff(
    *, emergency_id: str, note: str, data_dir: Path | None, as_json: bool
) -> None:
    """Sign off an emergency access (a ledger entry by this node, so it is audited too)."""
    root = verbs._root(data_dir)
    reply = call(root, commands.EmergencySignoff(emergency_id, note), Written)
    entry = decode_entry(reply.entry)
    shown = {"entry": entry.hash.hex(), "emergency": emergency_id}
    verbs.emit(shown, as_json, lambda r: click.echo(f"signed off {r['emergency']}"))


@emergency.command("pending")
@common
def emergency_pending(*, data_dir: Path | None, as_json: bool) -> None:
    """Emergency requests waiting for approval (require_approval = true)."""
    root = verbs._root(data_dir)
    reply = call(root, commands.EmergencyPending(), EmergencyPendingReply)
    rows = [
        {
            "request_id": r.request_id,
            "record_id": r.record_id.hex(),
            "requester": r.requester.hex(),
            "site": r.site,
            "reason": r.reason,
            "duration_ms": r.duration_ms,
            "asked_at": r.asked_at,
        }
        for r in reply.rows
    ]

    def show(shown: dict[str, Any]) -> None:
        for r in shown["requests"]:
            click.echo(
                f"{r['request_id']}  record {r['record_id'][:16]}  by {r['requester'][:16]}"
                f" ({r['site'] or 'no certified site'})  {r['duration_ms'] // 1000}s"
                f"  asked {verbs.when(r['asked_at'])}: {printable(r['reason'])}"
            )

    verbs.emit({"requests": rows}, as_json, show)


def _decide(request_id: str, approve: bool, data_dir: Path | None, as_json: bool) -> None:
    root = verbs._root(data_dir)
    reply = call(root, commands.EmergencyDecide(request_id, approve), EmergencyDecided)
    shown = {"request_id": request_id, "approved": reply.approved, "expires_at": reply.expires_at}

    def show(r: dict[str, Any]) -> None:
        if r["approved"]:
            click.echo(f"approved {request_id}: granted until {verbs.when(r['expires_at'])}")
        else:
            click.echo(f"denied {request_id}")

    verbs.emit(shown, as_json, show)


@emergency.command("approve")
@click.argument("request_id")
@common
def emergency_approve(*, request_id: str, data_dir: Path | None, as_json: bool) -> None:
    """Grant a waiting request (its duration counts from now)."""
    _decide(request_id, True, data_dir, as_json)


@emergency.command("deny")
@click.argument("request_id")
@common
def emergency_deny(*, request_id: str, data_dir: Path | None, as_json: bool) -> None:
    """Refuse a waiting request."""
    _decide(request_id, False, data_dir, as_json)


def emergency_flags(
    events: list[dict[str, Any]],
    entries: list[tuple[Entry, str | None]],
    record_key: bytes | None,
) -> None:
    """Mark a record's history events that are emergency accesses: flagged until the
    owner signs them off, with the reason where her record key opens it."""
    by_hash = {e["entry"]: e for e in events}
    for access in accesses(entries):
        shown = by_hash.get(access.entry.hash.hex())
        if shown is None:
            continue
        shown["emergency"] = "signed off" if access.signed_off else "flagged"
        shown["reason"] = None
        if record_key is not None:
            body = access.body
            with contextlib.suppress(sealing.SealError):
                shown["reason"] = sealing.open_text(
                    record_key, sealing.REASON, body.record_id, body.requester, body.reason
                )


COMMANDS = [emergency]
