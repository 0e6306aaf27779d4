"""`medvault audit RECORD`: who was granted a record, who read it, when and why.

The daemon builds the trail (protocol.ledger.trail) and refuses it to a node
that neither owns the record nor holds a current grant of it; this module
only shows it. A row kind this CLI does not know (a newer daemon's) is shown
with its fields as they are, never dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from node.cli import verbs
from node.cli.common import common, printable
from node.control.client import call
from protocol.control import commands
from protocol.control.jsonable import jsonable
from protocol.control.replies import AuditReply
from protocol.ledger.trail import TrailRow
from protocol.records.purpose import Purpose

SHORT = 16  # hex digits of a key shown in text


def who(row: TrailRow) -> str:
    """The key a row is about: a long-term key's short form, or a stealth grant's P."""
    short = row.who.hex()[:SHORT]
    return f"one-time key P {short}" if row.one_time else f"key {short}"


def purpose_name(code: str | None) -> str | None:
    if code is None:
        return None
    return Purpose(code).label if code in Purpose.__members__ else code


def through(row: TrailRow) -> str | None:
    """The node a read went through, with its certified site when known."""
    if row.node is None:
        return None
    site = f" ({printable(row.site)})" if row.site else ""
    return f"{row.node.hex()[:SHORT]}{site}"


def shown(row: TrailRow) -> dict[str, Any]:
    found: dict[str, Any] = jsonable(row)
    found.update(who_shown=who(row), purpose_name=purpose_name(row.purpose),
                 node_shown=through(row))  # fmt: skip
    return found


def sealed_text(text: str | None) -> str:
    """A reason or note as opened here; None: it does not open with this node's key."""
    return f'"{printable(text)}"' if text is not None else "(sealed: no key of the record here)"


def glass(row: dict[str, Any]) -> list[str]:
    """A break-glass row's tail: site, expiry, reason, and open or signed off."""
    parts = [f"site {printable(row['site'])}"] if row["site"] else []
    parts += [f"until {verbs.when(row['expires_at'])}", f"reason {sealed_text(row['reason'])}"]
    if row.get("signed_off_by") is not None:
        at = verbs.when(row["signed_off_at"])
        parts.append(f"signed off by {row['signed_off_by'][:SHORT]} at {at}")
        parts.append(f"note {sealed_text(row['note'])}")
    return parts


def line(row: dict[str, Any]) -> str:
    parts = [f"{verbs.when(row['at_ms'])}  {row['kind']:11} {row['who_shown']:31}"]
    if row["kind"] == "break-glass":
        return "  ".join([*parts, f"by {row['by'][:SHORT]}", *glass(row),
                          *(printable(flag) for flag in row["flags"])])  # fmt: skip
    if row["kind"] == "signoff":
        parts += [f"of break-glass {(row['emergency'] or '')[:SHORT]}",
                  f"by {row['by'][:SHORT]}", f"note {sealed_text(row['note'])}"]  # fmt: skip
        return "  ".join([*parts, *(printable(flag) for flag in row["flags"])])
    if row["node_shown"] is not None:
        parts.append(f"via {row['node_shown']}")
    if row["purpose_name"] is not None:
        parts.append(f"for {row['purpose_name']}")
    if row["loggers"]:
        parts.append(f"logged by {len(row['loggers'])}")
    else:
        parts.append(f"by {row['by'][:SHORT]}")
    if row["kind"] == "grant":
        expiry = row["expires_at"]
        parts.append(f"until {verbs.when(expiry)}" if expiry else "no expiry")
        if row["patient"]:
            parts.append("patient/co-owner")
    parts += [printable(flag) for flag in row["flags"]]
    return "  ".join(parts)


@click.command()
@click.argument("record_id")
@common
def audit(*, record_id: str, data_dir: Path | None, as_json: bool) -> None:
    """A record's audit trail: grants, revokes, attestations, claims, reads and emergency
    accesses, earliest first (on its owner's node or a node granted it)."""
    root = verbs._root(data_dir)
    rid = verbs.record_id_of(root, record_id)
    reply = call(root, commands.Audit(rid), AuditReply)
    result = {
        "record_id": rid.hex(),
        "owner": reply.owner.hex(),
        "rows": [shown(row) for row in reply.rows],
        "hidden_reads": reply.hidden_reads,
    }

    def text(r: dict[str, Any]) -> None:
        click.echo(f"record {r['record_id']}  owner {r['owner'][:SHORT]}")
        for row in r["rows"]:
            click.echo(line(row))
        if r["hidden_reads"]:
            click.echo(f"({r['hidden_reads']} older reads are in the ledger, not shown)")

    verbs.emit(result, as_json, text)


COMMANDS: list[click.Command] = [audit]
