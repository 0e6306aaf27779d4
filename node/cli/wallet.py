"""A person's stealth keys in the CLI: her address, a view-only key file, finding her grants.

Everything secret stays in this process: the daemon hands out public stealth
grants (control command stealth_grants, paged by a cursor), the view key
recognises hers here, and the full key opens a grant here (its record key
and its one-time signing key P, which signs read permits and wallet entries).
A listing opens name, type and true size here too (the ledger shows the padded
size): the daemon hands the record's sealed part to P, her record key opens it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from node.cli import wallet_cache
from node.cli.common import common, json_option, open_data_dir, printable
from node.config.datadir import DataDirError
from node.config.keyfiles import KeyFileError, KeyKind, read_secret, write_secret
from node.control.client import ControlFailed, call
from protocol.control import commands
from protocol.control.replies import RecordsReply, StealthGrantRow, StealthGrantsReply
from protocol.ledger.entries import grant_context
from protocol.privacy import (
    Opened,
    PersonKey,
    PrivacyError,
    StealthGrant,
    ViewKey,
    open_grant,
    scan,
)
from storage.codec.crypt import SegmentCipher
from storage.codec.manifest import open_contents
from storage.codec.padme import padme
from storage.errors import StorageError

MAX_PAGES = 100_000  # pages of stealth grants one scan asks for at most (a runaway daemon)


def load_person(path: Path) -> PersonKey:
    try:
        return PersonKey(read_secret(path, KeyKind.PERSON))
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


def load_view(path: Path) -> tuple[ViewKey, PersonKey | None]:
    """A view-only key file, or a person's key file (whose view part it uses)."""
    try:
        return ViewKey.from_bytes(read_secret(path, KeyKind.VIEW)), None
    except KeyFileError:
        person = load_person(path)
        return person.view, person
    except PrivacyError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def stealth_rows(root: Path, record_id: bytes | None = None) -> Iterator[StealthGrantRow]:
    """Every stealth grant the daemon holds (of one record, if given), page by page."""
    cursor = 0
    for _ in range(MAX_PAGES):
        reply = call(root, commands.StealthGrants(cursor, record_id=record_id), StealthGrantsReply)
        yield from reply.rows
        if reply.cursor <= cursor or reply.cursor >= reply.total:
            return
        cursor = reply.cursor


@dataclass(frozen=True)
class Mine:
    row: StealthGrantRow
    grant: StealthGrant


def find_mine(view: ViewKey, rows: Iterator[StealthGrantRow]) -> list[Mine]:
    """The rows whose grant the view key recognises (malformed grants are nobody's)."""
    pairs: list[tuple[StealthGrant, bytes]] = []
    kept: list[StealthGrantRow] = []
    for row in rows:
        try:
            grant = StealthGrant.from_bytes(row.grant)
        except PrivacyError:
            continue
        pairs.append((grant, grant_context(row.record_id, row.index)))
        kept.append(row)
    return [Mine(kept[position], pairs[position][0]) for position, _ in scan(view, pairs)]


def _mine(row: StealthGrantRow) -> Mine:
    return Mine(row, StealthGrant.from_bytes(row.grant))


def open_mine(person: PersonKey, mine: Mine) -> Opened | None:
    """Her grant opened (record key, one-time key), or None if its seal is broken."""
    try:
        return open_grant(person, mine.grant, grant_context(mine.row.record_id, mine.row.index))
    except PrivacyError:
        return None


def current_grant(root: Path, person: PersonKey, record_id: bytes) -> Opened | None:
    """Her current stealth grant of the record, opened; None if she holds none."""
    for mine in find_mine(person.view, stealth_rows(root, record_id)):
        if mine.row.current:
            opened = open_mine(person, mine)
            if opened is not None:
                return opened
    return None


@dataclass(frozen=True)
class Described:
    """What a wallet shows of one grant: the true size and the name and type when her
    key opened the record's sealed part, the ledger's padded size otherwise."""

    size: int
    filename: str | None = None
    content_type: str | None = None


def describe(root: Path, mine: Mine, opened: Opened | None) -> Described:
    """Her grant's record described: opened here through the daemon's sealed part,
    which it hands to her grant's P while the grant is current (nothing otherwise)."""
    padded = Described(mine.row.size)
    if opened is None or not mine.row.current:
        return padded
    try:
        reply = call(root, commands.ListRecords(opened.one_time_key.public), RecordsReply)
    except ControlFailed:
        return padded
    for row in reply.records:
        if row.record_id != mine.row.record_id or row.sealed_metadata is None:
            continue
        try:
            cipher = SegmentCipher(opened.record_key, row.record_id)
            metadata, size = open_contents(cipher, row.sealed_metadata)
        except StorageError:  # a junk sealed part (or not her record key): the ledger's size
            return padded
        # A version 1 record seals no size (the ledger's is exact); a true size must pad
        # to the ledger's, or it is not believed.
        true = size if size is not None and padme(size) == mine.row.size else mine.row.size
        return Described(true, metadata.filename, metadata.content_type)
    return padded


def person_grantee(value: str, what: str) -> bytes:
    """A public key (64 hex digits) or an address (132, from `keys address`)."""
    text = value.strip()
    if len(text) in {64, 132} and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    raise click.BadParameter(
        f"{what} must be a public key (64 hex digits) or an address (132), got {value[:80]!r}"
    )


def register(keys: click.Group) -> None:
    """Add `keys address` and `keys export-view` to the keys group."""
    keys.add_command(keys_address)
    keys.add_command(keys_export_view)


@click.command("address")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
def keys_address(*, file: Path, as_json: bool) -> None:
    """Print the address of a person's key file: hospitals grant to it (unlinkably)."""
    address = load_person(file).address.to_bytes().hex()
    if as_json:
        click.echo(json.dumps({"address": address, "key_file": str(file)}))
    else:
        click.echo(address)


@click.command("export-view")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The view-only key file to create (mode 0600; never overwritten).",
)
@json_option
def keys_export_view(*, file: Path, out: Path, as_json: bool) -> None:
    """Write the view part of a person's key: it finds her grants, cannot open or sign."""
    person = load_person(file)
    try:
        write_secret(out, KeyKind.VIEW, person.view.to_bytes())
    except (KeyFileError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"view_key_file": str(out)}))
    else:
        click.echo(f"wrote the view-only key to {out}")


@click.group()
def wallet() -> None:
    """A person's own records, found by her key (stealth grants)."""


@wallet.command("ls")
@click.option(
    "--as",
    "as_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="Her key file (opens grants here) or a view-only key file (finds them only).",
)
@common
def wallet_ls(*, as_key: Path, data_dir: Path | None, as_json: bool) -> None:
    """List the records granted to this person: found by scanning every stealth grant."""
    view, person = load_view(as_key)
    root = _root(data_dir)
    state, stats = wallet_cache.advance(
        root,
        wallet_cache.load(root, view),
        lambda rows: [m.row for m in find_mine(view, iter(rows))],
    )
    try:
        wallet_cache.save(root, view, state)
    except OSError as exc:  # the listing is right; the next run scans everything again
        click.echo(f"warning: cannot keep the wallet's scan ({exc})", err=True)
    found = [_mine(row) for row in state.mine]
    rows = []
    for m in found:
        opened = open_mine(person, m) if person is not None else None
        shown = describe(root, m, opened)
        rows.append(
            {
                "record_id": m.row.record_id.hex(),
                "index": m.row.index,
                "grant_key": m.grant.one_time.hex(),  # P: what `revoke` names
                "size": shown.size,  # true where her key opened it, else padded
                "filename": shown.filename,
                "content_type": shown.content_type,
                "granted_at": m.row.timestamp,
                "granted_by": m.row.author.hex(),
                "expires_at": m.row.expires_at,
                "patient": m.row.patient,
                "current": m.row.current,
                "opens": opened is not None,
            }
        )

    if as_json:
        scan = {"scanned": stats.scanned, "rescanned": stats.rescanned, "cursor": state.cursor}
        click.echo(json.dumps({"records": rows, "scan": scan}))
        return
    click.echo(
        f"{'RECORD':16}  {'#':>3}  {'NAME':24}  {'TYPE':24}  {'SIZE':>12}  {'GRANTED':17}"
        f"  {'BY':16}  STATE"
    )
    for m, listed in zip(found, rows, strict=True):
        row = m.row
        ended = ("current" if row.current else "ended") + (", co-owner" if row.patient else "")
        granted = dt.datetime.fromtimestamp(row.timestamp / 1000, dt.UTC)
        # Name and type are whatever the record's writer chose: escaped, then cut.
        name = printable(str(listed["filename"] or "?"))[:24]
        kind = printable(str(listed["content_type"] or "?"))[:24]
        click.echo(
            f"{row.record_id.hex()[:16]}  {row.index:>3}  {name:24}  {kind:24}"
            f"  {listed['size']:>12}  {granted:%Y-%m-%d %H:%MZ}  {row.author.hex()[:16]}  {ended}"
        )


def _root(data_dir: Path | None) -> Path:
    target = open_data_dir(data_dir)
    if not target.identity_path.exists():
        raise DataDirError(f"{target.root} is not a medvault data directory (run `medvault init`)")
    return target.root
