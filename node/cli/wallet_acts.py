"""The wallet's acts on one record: get, attest, share, revoke, and its history.

Each act finds her stealth grant of the record here (her view key scans the
record's grants, which the daemon hands out as public material), opens it here
with her full key, and signs with the grant's one-time key P: permits for a
read, or a ledger entry at the head of P's own feed, submitted through the
daemon (which checks the ledger's rules, protocol.ledger.stealth, and names the
rule when it refuses). Her key file never leaves this process; a view-only key
file finds and shows, and is refused with a clear error where signing is needed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import nacl.signing

from node.cli import claims as claims_cli
from node.cli import verbs, wallet
from node.cli.common import common, printable
from node.cli.emergency import emergency_flags
from node.config.keyfiles import KeyFileError, KeyKind, read_secret
from node.control.client import ControlClient, call
from protocol.claims.disclosure import DEFAULT_FIELDS, NONCE_SIZE, SALT_SIZE, commitment, seal
from protocol.control import commands
from protocol.control.replies import (
    Done,
    FeedHeadReply,
    GetHeader,
    LedgerReply,
    NodeKeyReply,
)
from protocol.ledger.entries import (
    AccessBody,
    AttestBody,
    Body,
    ClaimBody,
    EmergencyBody,
    Entry,
    GrantBody,
    RevokeBody,
    StealthGrantBody,
    decode_entry,
    grant_context,
    sign_entry,
)
from protocol.ledger.timestamps import entry_time
from protocol.privacy import Address, Opened, PersonKey, PrivacyError, make_grant
from protocol.records import permit
from protocol.records.purpose import Purpose
from protocol.text import counted

HEX = "0123456789abcdefABCDEF"
BodyOf = Callable[[FeedHeadReply], Body]
F = TypeVar("F", bound=Callable[..., Any])


def as_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--as",
        "as_key",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        required=True,
        help=help_text,
    )


def load_spender(path: Path) -> PersonKey:
    """Her full key: a view-only key file is refused by name (it cannot open or sign)."""
    try:
        read_secret(path, KeyKind.VIEW)
    except KeyFileError:
        return wallet.load_person(path)
    raise click.ClickException(
        f"{path} is a view-only key: it finds her grants but cannot open or sign them;"
        " give her key file"
    )


def her_grant(root: Path, person: PersonKey, record_id: bytes, *, patient: bool) -> Opened:
    """Her current stealth grant of the record (a co-owner one if `patient`), opened."""
    mine = wallet.find_mine(person.view, wallet.stealth_rows(root, record_id))
    short = record_id.hex()[:16]
    if not mine:
        raise click.ClickException(f"this key holds no stealth grant of record {short}")
    current = [m for m in mine if m.row.current and (m.row.patient or not patient)]
    for found in current:
        opened = wallet.open_mine(person, found)
        if opened is not None:
            return opened
    if patient and any(m.row.current for m in mine):
        raise click.ClickException(
            f"this key's grant of record {short} is no patient (co-owner) grant: only a"
            " patient granted with --patient may share or revoke"
        )
    if current:
        raise click.ClickException(f"this key's grant of record {short} does not open")
    raise click.ClickException(f"this key's grant of record {short} has ended (revoked or expired)")


def submit(root: Path, opened: Opened, record_id: bytes, body_of: BodyOf) -> Entry:
    """Sign the body (made from P's feed head: the manifest hash, the next free grant
    index) at the head of P's feed, here, and submit it through the daemon."""
    key = opened.one_time_key
    head = call(root, commands.FeedHead(key.public, record_id), FeedHeadReply)
    stamp = entry_time(int(time.time() * 1000))  # on the minute, as the daemon writes
    entry = sign_entry(key, head.seq, head.prev, stamp, body_of(head))
    call(root, commands.Submit(entry.raw), Done)
    return entry


def _record(root: Path, text: str) -> bytes:
    return verbs.record_id_of(root, text)


@click.command("get")
@click.argument("record_id")
@click.option(
    "-o",
    "--out",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here (in place only once complete); default stdout.",
)
@as_option("Her key file: opens her grant and decrypts here.")
@common
def wallet_get(
    *, record_id: str, output: Path | None, as_key: Path, data_dir: Path | None, as_json: bool
) -> None:
    """Read a record through her stealth grant (permits signed by its one-time key)."""
    person = load_spender(as_key)
    if output is None and sys.stdout.isatty():
        raise click.UsageError("refusing to write a record to a terminal; give --out FILE")
    root = verbs._root(data_dir)
    rid = _record(root, record_id)
    opened = her_grant(root, person, rid, patient=False)
    key = opened.one_time_key
    node = call(root, commands.NodeKey(), NodeKeyReply).public_key
    permits = permit.sign_series(key, rid, node, int(time.time() * 1000), verbs.READ_PERMITS,
                                 read_id=os.urandom(permit.READ_ID_SIZE),
                                 purpose=Purpose.PATRQT)  # fmt: skip
    reader = nacl.signing.SigningKey(person.seed)
    with ControlClient(root) as client:
        header = client.request(commands.Get(rid, key.public, permits), GetHeader)
        size, decrypt = verbs._decryptor(header, rid, reader, opened)
        with verbs._output(output) as sink:
            written = client.download(sink, decrypt)
    if written != size:
        raise click.ClickException(f"received {counted(written, 'byte')}, the record has {size}")
    if output is not None:
        shown = {"record_id": rid.hex(), "size": written, "file": str(output)}
        verbs.emit(shown, as_json, verbs._quiet)


@click.command("attest")
@click.argument("record_id")
@click.option(
    "--disclose",
    default=",".join(DEFAULT_FIELDS),
    show_default=True,
    help="What the claim shows those she shared the record with (an insurer):"
    " date, type, provider, or none.",
)
@as_option("Her key file: signs here with her grant's one-time key.")
@common
def wallet_attest(
    *, record_id: str, disclose: str, as_key: Path, data_dir: Path | None, as_json: bool
) -> None:
    """Confirm a record about her is correct, signed by her grant's key P: a claim that
    verifies for anyone, links to her only for someone holding her view key, and shows
    the disclosed fields only to holders of a grant of the record (docs/claims.md)."""
    chosen = claims_cli.disclose_fields(disclose)
    person = load_spender(as_key)
    root = verbs._root(data_dir)
    rid = _record(root, record_id)
    opened = her_grant(root, person, rid, patient=False)
    metadata, created_at = claims_cli.her_metadata(root, opened, rid)
    disclosure = claims_cli.disclosure_of(metadata, created_at, chosen, os.urandom(SALT_SIZE))

    def claim(head: FeedHeadReply) -> ClaimBody:
        sealed = seal(opened.record_key, rid, head.manifest_hash, disclosure,
                      os.urandom(NONCE_SIZE))  # fmt: skip
        return ClaimBody(rid, head.manifest_hash, commitment(disclosure), sealed)

    entry = submit(root, opened, rid, claim)
    shown = {"entry": entry.hash.hex(), "grant_key": entry.author.hex(), "record_id": rid.hex(),
             "disclosed": list(disclosure.shown())}  # fmt: skip
    verbs.emit(shown, as_json, lambda r: click.echo(f"attested ({r['entry']})"))


@click.command("share")
@click.argument("record_id")
@click.argument("address")
@click.option("--expires", default=None, help="30d, 12h, or an ISO date; default never.")
@as_option("Her key file (a patient's: her grant co-owns the record's sharing).")
@common
def wallet_share(
    *,
    record_id: str,
    address: str,
    expires: str | None,
    as_key: Path,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Grant ADDRESS (`keys address` of a doctor, an insurer) a record she co-owns."""
    person = load_spender(as_key)
    to = _address(address)
    expires_at = verbs.expiry_ms(expires, coarse=True)
    root = verbs._root(data_dir)
    rid = _record(root, record_id)
    opened = her_grant(root, person, rid, patient=True)

    def share(head: FeedHeadReply) -> StealthGrantBody:
        index = head.next_index  # the record's next free index, as this daemon knows it
        grant = make_grant(to, opened.record_key, os.urandom(32), grant_context(rid, index))
        return StealthGrantBody(rid, grant.to_bytes(), index, expires_at, False)

    entry = submit(root, opened, rid, share)
    body = entry.body
    assert isinstance(body, StealthGrantBody)
    shown = {
        "entry": entry.hash.hex(),
        "record_id": rid.hex(),
        "grant_key": body.one_time.hex(),
        "index": body.index,
        "expires_at": expires_at,
    }
    verbs.emit(shown, as_json, lambda r: click.echo(f"shared: grant {r['grant_key']}"))


def _address(text: str) -> Address:
    value = text.strip()
    if len(value) != 132 or any(c not in HEX for c in value):
        raise click.BadParameter(
            f"a share goes to an address (132 hex digits, `keys address`), got {text[:80]!r}",
            param_hint="ADDRESS",
        )
    try:
        return Address.from_bytes(bytes.fromhex(value))
    except PrivacyError as exc:
        raise click.BadParameter(f"not a valid address: {exc}", param_hint="ADDRESS") from None


@click.command("revoke")
@click.argument("record_id")
@click.argument("grant")
@as_option("Her key file (a patient's: her grant co-owns the record's sharing).")
@common
def wallet_revoke(
    *, record_id: str, grant: str, as_key: Path, data_dir: Path | None, as_json: bool
) -> None:
    """End the grant GRANT (its one-time key, as `wallet history` shows it) of a record
    she co-owns: holders refuse its reads from then on."""
    person = load_spender(as_key)
    p = verbs.hex_bytes(grant.strip(), "GRANT")
    root = verbs._root(data_dir)
    rid = _record(root, record_id)
    rows = list(wallet.stealth_rows(root, rid))
    if not any(row.grant[34:66] == p for row in rows):
        raise click.ClickException(
            f"record {rid.hex()[:16]} has no stealth grant {grant[:16]} (`wallet history`"
            " shows its grants)"
        )
    if any(m.grant.one_time == p for m in wallet.find_mine(person.view, iter(rows))):
        raise click.ClickException("that grant is this key's own: a co-owner cannot revoke it")
    opened = her_grant(root, person, rid, patient=True)
    entry = submit(root, opened, rid, lambda head: RevokeBody(rid, p))
    shown = {"entry": entry.hash.hex(), "record_id": rid.hex(), "grant_key": p.hex()}
    verbs.emit(shown, as_json, lambda r: click.echo(f"revoked {r['grant_key']}"))


@click.command("history")
@click.argument("record_id")
@as_option("Her key file or a view-only key file (finds which grants are hers).")
@common
def wallet_history(*, record_id: str, as_key: Path, data_dir: Path | None, as_json: bool) -> None:
    """Every grant, revoke, attestation, read and emergency access of a record, hers
    marked (her view key tells which one-time keys are hers; nobody else can)."""
    view, person = wallet.load_view(as_key)
    root = verbs._root(data_dir)
    rid = _record(root, record_id)
    mine = wallet.find_mine(view, wallet.stealth_rows(root, rid))
    hers = {m.grant.one_time for m in mine}
    hers.add(view.spend_public)  # old-format grants name her long-term key
    reply = call(root, commands.Ledger(rid, 0), LedgerReply)
    entries = [(decode_entry(row.raw), row.rejected) for row in reply.entries]
    events = [_event(entry, rejected, hers) for entry, rejected in entries]
    record_key = _her_record_key(person, mine)
    emergency_flags(events, entries, record_key)

    def text(shown: dict[str, Any]) -> None:
        for e in shown["events"]:
            grant = (e["grant_key"] or "")[:16]
            index = f"#{e['index']}" if e["index"] is not None else ""
            by = "her" if e["by_her"] else e["author"][:16]
            flags = " ".join(
                flag
                for flag, on in (
                    ("YOURS", e["mine"]),
                    ("co-owner", e["patient"]),
                    (f"read for {(e['read'] or {}).get('purpose')}", e["read"]),
                    (f"REJECTED: {e['rejected']}", e["rejected"]),
                    ("EMERGENCY (not signed off)", e.get("emergency") == "flagged"),
                    ("emergency, signed off", e.get("emergency") == "signed off"),
                )
                if on
            )
            click.echo(
                f"{verbs.when(e['timestamp'])}  {e['type']:9} {grant:16} {index:>6}"
                f"  by {by:16}  {flags}".rstrip()
            )
            if e.get("reason") is not None:
                click.echo(f"    reason: {printable(e['reason'])}")

    verbs.emit({"record_id": rid.hex(), "events": events}, as_json, text)


def _her_record_key(person: PersonKey | None, mine: list[wallet.Mine]) -> bytes | None:
    """The record key her full key opens from any of her grants (a view key opens none)."""
    if person is None:
        return None
    for found in mine:
        opened = wallet.open_mine(person, found)
        if opened is not None:
            return opened.record_key
    return None


def _event(entry: Entry, rejected: str | None, hers: set[bytes]) -> dict[str, Any]:
    """One ledger entry of the record as her history shows it."""
    body = entry.body
    grant: bytes | None = None
    index = None
    patient = False
    expires_at = 0
    if isinstance(body, StealthGrantBody):
        grant, index, patient, expires_at = body.one_time, body.index, body.patient, body.expires_at
    elif isinstance(body, GrantBody):
        grant, expires_at = body.grantee, body.expires_at
    elif isinstance(body, RevokeBody):
        grant = body.grantee
    elif isinstance(body, AttestBody | ClaimBody):
        grant = entry.author
    elif isinstance(body, EmergencyBody):
        grant, expires_at = body.requester, body.expires_at
    read = None
    if isinstance(body, AccessBody):  # a read: the reader's key (hers: one of her P)
        statement = body.decoded
        grant = statement.reader
        read = {"node": statement.node.hex(), "purpose": str(statement.purpose),
                "issued_at_ms": statement.issued_at_ms}  # fmt: skip
    return {
        "type": str(entry.type),
        "timestamp": entry.timestamp,
        "author": entry.author.hex(),
        "entry": entry.hash.hex(),
        "grant_key": grant.hex() if grant else None,
        "index": index,
        "patient": patient,
        "expires_at": expires_at,
        "mine": grant is not None and grant in hers,
        "by_her": entry.author in hers,
        "rejected": rejected,
        "read": read,
    }


def register(group: click.Group) -> None:
    """Add the acts to the `wallet` group."""
    for command in (wallet_get, wallet_attest, wallet_share, wallet_revoke, wallet_history):
        group.add_command(command)
