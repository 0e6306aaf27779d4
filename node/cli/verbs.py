"""The `medvault` verbs that talk to a running daemon (and `keys`, which need none).

Every verb reaches the daemon through its control socket only: the CLI
never opens the data files of a running node. With `--as KEYFILE` the
person's private key is read here and used here (to unseal a record key and
decrypt, or to sign an attestation); it is never sent to the daemon.
Failures print one line on stderr and exit non-zero.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import nacl.signing

from node.cli import wallet
from node.cli.common import (
    EXIT_DEGRADED,
    EXIT_UNREADABLE,
    common,
    json_option,
    open_data_dir,
    printable,
)
from node.config.datadir import DataDirError
from node.config.keyfiles import KeyFileError, KeyKind, load_signing_key, write_secret
from node.control.client import ControlClient, ControlFailed, call
from protocol.control import commands
from protocol.control.jsonable import jsonable
from protocol.control.replies import (
    CheckReply,
    CheckRow,
    Done,
    FeedHeadReply,
    FeedResumed,
    GcReply,
    GetHeader,
    HealthReport,
    LedgerReply,
    NodeKeyReply,
    PeersReply,
    RecordResolved,
    RecordRow,
    RecordsReply,
    StatusReply,
    Written,
)
from protocol.ledger.entries import AttestBody, Entry, InvalidEntry, decode_entry, sign_entry
from protocol.ledger.timestamps import entry_time, expiry_time
from protocol.privacy import Opened, PersonKey
from protocol.records import permit
from protocol.records.purpose import Purpose, parse_purpose
from protocol.signer import as_signer
from protocol.text import counted
from storage.codec.crypt import SegmentCipher, open_sealed_key
from storage.codec.manifest import Manifest, open_contents
from storage.codec.padme import padme
from storage.errors import StorageError

F = TypeVar("F", bound=Callable[..., Any])
HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
HEX_PREFIX = re.compile(r"^[0-9a-fA-F]{8,63}$")
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
READ_PERMITS = 12  # `get --as` signs permits for two hours of reading (ten minutes each)


def _root(data_dir: Path | None) -> Path:
    target = open_data_dir(data_dir)
    if not target.identity_path.exists():
        raise DataDirError(f"{target.root} is not a medvault data directory (run `medvault init`)")
    return target.root


def record_id_of(root: Path, text: str, what: str = "RECORD_ID") -> bytes:
    """A record id, or the unique record whose id starts with 8+ hex digits (the
    daemon resolves prefixes against its ledger)."""
    if HEX_KEY.match(text):
        return bytes.fromhex(text)
    if not HEX_PREFIX.match(text):
        raise click.BadParameter(
            f"a record id is 64 hex digits, or a unique prefix of 8 or more; got {text[:80]!r}",
            param_hint=what,
        )
    return call(root, commands.ResolveRecord(text), RecordResolved).record_id


def hex_bytes(value: str, what: str) -> bytes:
    if not HEX_KEY.match(value):
        raise click.BadParameter(f"{what} must be 64 hex characters, got {value[:80]!r}")
    return bytes.fromhex(value)


def duration_s(value: str, hint: str) -> int:
    """Seconds of a duration written 45s, 90m, 12h or 30d."""
    match = DURATION.match(value)
    if not match:
        raise click.BadParameter(
            f"{value!r} is not a duration (45s, 90m, 12h, 30d)", param_hint=hint
        )
    return int(match[1]) * UNITS[match[2]]


def expiry_ms(value: str | None, *, coarse: bool = False) -> int:
    """0 for never; a duration (30d, 12h, 90m, 45s) from now; or an ISO date/time.

    `coarse` (a grant's expiry, published in the ledger): a duration ends on a
    minute, rounded up, so it does not give away the writing time to the ms.
    """
    if not value:
        return 0
    match = DURATION.match(value)
    if match:
        seconds = int(match[1]) * UNITS[match[2]]
        if seconds == 0:
            raise click.BadParameter(
                f"{value!r} would end the grant at once; give 1s or more", param_hint="--expires"
            )
        end = int((time.time() + seconds) * 1000)
        return expiry_time(end) if coarse else end
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (30d, 12h) nor an ISO date", param_hint="--expires"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if moment.timestamp() <= time.time():
        raise click.BadParameter(f"{value!r} is in the past", param_hint="--expires")
    return int(moment.timestamp() * 1000)


def person_key(path: Path) -> nacl.signing.SigningKey:
    return load_signing_key(path, KeyKind.PERSON)


Shown = TypeVar("Shown")


def emit(reply: Shown, as_json: bool, text: Callable[[Shown], None]) -> None:
    if as_json:
        click.echo(json.dumps(jsonable(reply)))
    else:
        text(reply)


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- node ---------------------------------------------------------------------------


@click.command()
@common
def status(*, data_dir: Path | None, as_json: bool) -> None:
    """Show the running node: identity, peers, ledger and store."""
    reply = call(_root(data_dir), commands.Status(), StatusReply)

    def text(r: StatusReply) -> None:
        for key, value in jsonable(r).items():
            click.echo(f"{key:18} {value}")

    emit(reply, as_json, text)


@click.command()
@common
def peers(*, data_dir: Path | None, as_json: bool) -> None:
    """List the nodes in this node's routing table, with their sites."""
    reply = call(_root(data_dir), commands.Peers(), PeersReply)

    def text(r: PeersReply) -> None:
        if not r.peers:
            click.echo("no peers known yet (is a bootstrap peer reachable? see the log)")
        for peer in r.peers:
            state = printable(peer.site or "") if peer.reachable else "unreachable"
            click.echo(f"{peer.public_key.hex()}  {peer.address:21}  {state}")

    emit(reply, as_json, text)


@click.group()
def keys() -> None:
    """People's keys (patients, clinicians)."""


wallet.register(keys)


@keys.command("new")
@click.option(
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The key file to create (mode 0600; never overwritten).",
)
@json_option
def keys_new(*, output: Path, as_json: bool) -> None:
    """Create a person's key file (mode 0600) and print its public key."""
    seed = os.urandom(32)
    try:
        write_secret(output, KeyKind.PERSON, seed)
    except (KeyFileError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    public = bytes(nacl.signing.SigningKey(seed).verify_key).hex()
    if as_json:
        click.echo(json.dumps({"public_key": public, "key_file": str(output)}))
    else:
        click.echo(public)


@keys.command("show")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
def keys_show(*, file: Path, as_json: bool) -> None:
    """Print the public key of a person's key file (the private part stays in the file)."""
    try:
        public = bytes(person_key(file).verify_key).hex()
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"public_key": public, "key_file": str(file)}))
    else:
        click.echo(public)


# -- records -----------------------------------------------------------------------------


@click.command()
@click.argument(
    "file", type=click.Path(dir_okay=False, exists=True, allow_dash=True, path_type=Path)
)
@click.option("--type", "content_type", default="", help="Content type, e.g. application/pdf.")
@click.option("--name", default=None, help="File name to record (default: FILE's name).")
@click.option(
    "--patient",
    default=None,
    help="The patient's address (`keys address`: an unlinkable grant that lets her share"
    " and revoke) or public key (an old-format grant, noted in the record).",
)
@click.option(
    "--grant",
    "grants",
    multiple=True,
    help="Another address or public key to grant (repeatable).",
)
@click.option(
    "--expires",
    default=None,
    help="When the --grant grants end (30d, 12h, or an ISO date); the owner's and the"
    " patient's never do.",
)
@click.option(
    "--require-full",
    is_flag=True,
    help="Fail (and record nothing) unless all n holders, spread over sites, confirm.",
)
@common
def put(
    *,
    file: Path,
    content_type: str,
    name: str | None,
    patient: str | None,
    grants: tuple[str, ...],
    expires: str | None,
    require_full: bool,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Store FILE ('-' for stdin) across the network; prints the record id.

    A put that was recorded but is degraded (fewer than n distinct holders,
    or so much on one site that losing it loses the record) says why on
    stderr and exits 3.
    """
    if expires is not None and not grants:
        raise click.UsageError(
            "--expires applies to --grant (the owner's and the patient's grants never end)"
        )
    request = commands.Put(
        content_type=content_type,
        filename=name if name is not None else ("" if str(file) == "-" else file.name),
        patient=wallet.person_grantee(patient, "--patient") if patient else None,
        grantees=tuple(wallet.person_grantee(g, "--grant") for g in grants),
        expires_at=expiry_ms(expires, coarse=True),
        attached=True,  # the file goes to the daemon as a descriptor when it has one
        size=0 if str(file) == "-" else file.stat().st_size,
        require_full=require_full,
    )
    root = _root(data_dir)
    source = sys.stdin.buffer if str(file) == "-" else open(file, "rb")  # noqa: SIM115
    total = None if str(file) == "-" else file.stat().st_size
    with source, ControlClient(root) as client, _progress(total) as advance:
        reply = client.upload(request, source, advance)
    emit(reply, as_json, lambda r: click.echo(r.record_id.hex()))
    if reply.degraded:
        click.echo(
            f"degraded: {'; '.join(reply.reasons)}; the record was stored on"
            f" {counted(reply.holders, 'node')} at {counted(reply.sites, 'site')}"
            " (`medvault check --repair` when the network has room)",
            err=True,
        )
        sys.exit(EXIT_DEGRADED)


class _progress:
    """A progress bar on stderr for large uploads to a terminal; silent otherwise."""

    def __init__(self, total: int | None) -> None:
        self.bar: Any = None
        if total is not None and total >= 8 * 1024 * 1024 and sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label="storing", file=sys.stderr)

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is None:
            return lambda done: None
        bar = self.bar.__enter__()
        return bar.update  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@click.command()
@click.argument("record_id")
@click.option(
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here (in place only once complete); default stdout.",
)
@click.option(
    "--as",
    "as_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read as this person (their key file); decryption happens here.",
)
@click.option(
    "--purpose",
    "purpose_name",
    default=None,
    help="Why it is read, logged in the ledger: treatment, payment, operations,"
    " emergency-treatment, patient-request (or the HL7 code: TREAT, HPAYMT, ...)."
    " Default: the node's emergency-treatment when its right to read is an emergency"
    " grant, else treatment (with --as: treatment).",
)
@common
def get(
    *,
    record_id: str,
    output: Path | None,
    as_key: Path | None,
    purpose_name: str | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Read a record back (to -o FILE, else stdout); the read is logged with its purpose."""
    try:
        purpose = parse_purpose(purpose_name) if purpose_name is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--purpose") from None
    reader = person_key(as_key) if as_key else None
    if output is None and sys.stdout.isatty():
        raise click.UsageError("refusing to write a record to a terminal; give -o FILE")
    root = _root(data_dir)
    rid = record_id_of(root, record_id)
    request = commands.Get(rid, None, purpose=str(purpose) if purpose else None)
    stealth = None
    if reader is not None:  # signed here: the holders serve blocks only for it
        node = call(root, commands.NodeKey(), NodeKeyReply).public_key
        issued = int(time.time() * 1000)
        stealth = wallet.current_grant(root, PersonKey.from_signing_key(reader), rid)
        signer = reader if stealth is None else stealth.one_time_key  # her grant's key P
        permits = permit.sign_series(signer, rid, node, issued, READ_PERMITS,
                                     read_id=os.urandom(permit.READ_ID_SIZE),
                                     purpose=purpose or Purpose.TREAT)  # fmt: skip
        request = commands.Get(rid, as_signer(signer).public, permits)
    with ControlClient(root) as client:
        header = client.request(request, GetHeader)
        size, decrypt = _decryptor(header, rid, reader, stealth) if reader else (header.size, None)
        with _output(output) as sink:
            written = client.download(sink, decrypt)
    if written != size:
        raise click.ClickException(f"received {counted(written, 'byte')}, the record has {size}")
    if output is not None:
        emit({"record_id": rid.hex(), "size": written, "file": str(output)}, as_json, _quiet)


def _quiet(reply: dict[str, Any]) -> None:
    click.echo(f"wrote {counted(reply['size'], 'byte')} to {reply['file']}", err=True)


def _decryptor(
    header: GetHeader,
    record_id: bytes,
    reader: nacl.signing.SigningKey,
    stealth: Opened | None = None,
) -> tuple[int, Callable[[int, bytes], bytes]]:
    """The record's true size (the daemon knows only the padded one) and its decryption:
    with the record key her stealth grant opened here, or the one sealed to her
    long-term key (old format)."""
    if header.manifest is None or header.sealed_key is None:
        raise ControlFailed("the daemon sent no manifest or sealed key for a reader's get")
    manifest = Manifest.decode(header.manifest)
    if manifest.record_id != record_id:
        raise ControlFailed("the daemon sent the manifest of another record")
    key = stealth.record_key if stealth else open_sealed_key(header.sealed_key, reader)
    cipher = SegmentCipher(key, record_id)
    size = manifest.contents(cipher).size

    def decrypt(segment: int, ciphertext: bytes) -> bytes:
        plaintext = cipher.decrypt_segment(segment, manifest.is_last(segment), ciphertext)
        return manifest.record_part(segment, plaintext, size)

    return size, decrypt


class _output:
    """stdout, or a temporary file beside FILE renamed into place only when complete."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.temp: Path | None = None
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.path is None:
            return sys.stdout.buffer
        if not self.path.parent.is_dir():
            raise click.ClickException(f"cannot write {self.path}: its directory does not exist")
        self.temp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.handle = os.fdopen(fd, "wb")
        return self.handle

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self.handle is None or self.temp is None or self.path is None:
            sys.stdout.buffer.flush()
            return
        try:
            if kind is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
        finally:
            self.handle.close()
            if kind is None:
                os.replace(self.temp, self.path)
            else:
                self.temp.unlink(missing_ok=True)


@click.command("ls")
@click.option(
    "--as",
    "as_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="List as this person (their key file): what they may read, names opened here.",
)
@common
def list_records(*, as_key: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List the records this node (or --as person) owns or was granted."""
    person = person_key(as_key) if as_key else None
    reader = bytes(person.verify_key) if person else None
    reply = call(_root(data_dir), commands.ListRecords(reader), RecordsReply)
    rows = [opened(row, person) for row in reply.records]

    def text(shown: dict[str, list[RecordRow]]) -> None:
        click.echo(f"{'RECORD':16}  {'NAME':24}  {'TYPE':24}  {'SIZE':>12}  {'CREATED':20}  GRANTS")
        for row in shown["records"]:
            # Name and type are whatever the record's writer chose: escaped, then cut.
            name = printable(row.filename or "?")[:24]
            kind = printable(row.content_type or "?")[:24]
            click.echo(
                f"{row.record_id.hex()[:16]}  {name:24}  {kind:24}  {row.size:>12}"
                f"  {when(row.created_at):20}  {len(row.grantees)}"
            )

    emit({"records": rows}, as_json, text)


def opened(row: RecordRow, person: nacl.signing.SigningKey | None) -> RecordRow:
    """The row with name and type opened here with the person's key, when it came sealed."""
    if person is None or row.sealed_metadata is None or row.sealed_key is None:
        return row
    try:
        key = open_sealed_key(row.sealed_key, person)
        metadata, size = open_contents(SegmentCipher(key, row.record_id), row.sealed_metadata)
    except StorageError:
        return row
    return dataclasses.replace(
        row,
        # The ledger shows the padded size; her key opens the true one (if it agrees).
        size=size if size is not None and padme(size) == row.size else row.size,
        filename=metadata.filename,
        content_type=metadata.content_type,
        sealed_metadata=None,
        sealed_key=None,
    )


@click.command()
@click.argument("record_id")
@click.argument("public_key")
@click.option("--expires", default=None, help="30d, 12h, or an ISO date; default never.")
@click.option(
    "--patient",
    is_flag=True,
    help="PUBLIC_KEY is the patient's address: she co-owns the record's sharing.",
)
@common
def grant(
    *,
    record_id: str,
    public_key: str,
    expires: str | None,
    patient: bool,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Let PUBLIC_KEY (a public key, or an address from `keys address`) read a record
    this node owns; a grant to an address names nobody in the ledger."""
    root = _root(data_dir)
    grantee = wallet.person_grantee(public_key, "PUBLIC_KEY")
    if patient and (len(grantee) != commands.ADDRESS_SIZE or expires):
        raise click.UsageError("--patient takes an address, and a patient's grant never expires")
    request = commands.Grant(
        record_id_of(root, record_id), grantee, expiry_ms(expires, coarse=True), patient=patient
    )
    show_written(call(root, request, Written), as_json, "granted")


@click.command()
@click.argument("record_id")
@click.argument("public_key")
@common
def revoke(*, record_id: str, public_key: str, data_dir: Path | None, as_json: bool) -> None:
    """Stop PUBLIC_KEY reading a record (new reads are refused)."""
    root = _root(data_dir)
    request = commands.Revoke(record_id_of(root, record_id), hex_bytes(public_key, "PUBLIC_KEY"))
    show_written(call(root, request, Written), as_json, "revoked")


@click.command()
@click.argument("record_id")
@common
def delete(*, record_id: str, data_dir: Path | None, as_json: bool) -> None:
    """Tombstone a record this node owns: every holder deletes its shards."""
    root = _root(data_dir)
    request = commands.Delete(record_id_of(root, record_id))
    show_written(call(root, request, Written), as_json, "deleted")


def show_written(reply: Written, as_json: bool, done: str) -> None:
    """What a grant, revoke or delete wrote: the entry (JSON), or one word."""
    emit(describe_entry(reply.entry, None), as_json, lambda entry: click.echo(done))


@click.command()
@click.argument("record_id")
@click.option(
    "--as",
    "as_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The attesting person's key file (signs here, never sent).",
)
@common
def attest(*, record_id: str, as_key: Path, data_dir: Path | None, as_json: bool) -> None:
    """Sign, as a person, that a record is theirs and correct: with her current stealth
    grant's one-time key P when she holds one (her long-term key appears nowhere),
    else with her long-term key (an old-format grant)."""
    person = person_key(as_key)
    root = _root(data_dir)
    rid = record_id_of(root, record_id)
    stealth = wallet.current_grant(root, PersonKey.from_signing_key(person), rid)
    signer = person if stealth is None else stealth.one_time_key
    head = call(root, commands.FeedHead(as_signer(signer).public, rid), FeedHeadReply)
    stamp = entry_time(int(time.time() * 1000))  # on the minute, as the daemon writes
    entry = sign_entry(signer, head.seq, head.prev, stamp, AttestBody(rid, head.manifest_hash))
    call(root, commands.Submit(entry.raw), Done)
    emit({"entry": entry.hash.hex()}, as_json, lambda r: click.echo(f"attested ({r['entry']})"))


@click.command()
@click.option("--record", "record_id", default=None, help="Only this record's entries.")
@click.option(
    "--tail", default=None, type=click.IntRange(min=1), help="Only the last N entries (N >= 1)."
)
@click.option(
    "--resume-feed",
    is_flag=True,
    help="This node's own feed forked: let its next write continue from one of its tips.",
)
@common
def ledger(
    *,
    record_id: str | None,
    tail: int | None,
    resume_feed: bool,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Show ledger entries (oldest first)."""
    if resume_feed:
        resumed = call(_root(data_dir), commands.ResumeFeed(), FeedResumed)
        emit(resumed, as_json, lambda r: click.echo(f"the next write follows {r.tip.hex()}"))
        return
    root = _root(data_dir)
    rid = record_id_of(root, record_id, "--record") if record_id else None
    reply = call(root, commands.Ledger(rid, tail or 0), LedgerReply)  # 0: every entry
    shown = {"entries": [describe_entry(row.raw, row.rejected) for row in reply.entries]}

    def text(r: dict[str, Any]) -> None:
        for entry in r["entries"]:
            body = entry["body"]
            about = body.get("record_id", "")[:16]
            extra = body.get("grantee", "")[:16]
            flag = f"  REJECTED: {entry['rejected']}" if entry["rejected"] else ""
            click.echo(
                f"{when(entry['timestamp'])}  {entry['type']:9} {about}  {extra:16}"
                f"  by {entry['author'][:16]}#{entry['seq']}{flag}"
            )

    emit(shown, as_json, text)


def describe_entry(raw: bytes, rejected: str | None) -> dict[str, Any]:
    """An entry for display: its fields, keys in hex, sealed keys left out."""
    try:
        entry: Entry = decode_entry(raw)
    except InvalidEntry as exc:
        raise ControlFailed(f"the daemon sent a ledger entry that does not decode: {exc}") from None
    body = {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in vars(entry.body).items()
        if name != "sealed_key"
    }
    return {
        "hash": entry.hash.hex(),
        "author": entry.author.hex(),
        "seq": entry.seq,
        "timestamp": entry.timestamp,
        "type": str(entry.type),
        "body": body,
        "rejected": rejected,
    }


@click.command()
@click.option(
    "--older-than",
    default="1h",
    show_default=True,
    help="Only what is older than this (30m, 12h, 2d); an upload still running is younger.",
)
@common
def gc(*, older_than: str, data_dir: Path | None, as_json: bool) -> None:
    """Delete shards that failed uploads left behind (`status` shows what they weigh)."""
    seconds = duration_s(older_than, "--older-than")
    reply = call(_root(data_dir), commands.Gc(seconds), GcReply)

    def text(r: GcReply) -> None:
        indices = counted(r.indices, "unfinished shard index", "unfinished shard indices")
        click.echo(
            f"deleted {counted(r.records, 'unrecorded upload')} and {indices},"
            f" {counted(r.bytes_freed, 'byte')} freed"
        )

    emit(reply, as_json, text)


@click.command()
@click.argument("record_id", required=False)
@click.option("--all", "check_all", is_flag=True, help="Every record this node owns or holds.")
@click.option(
    "--network",
    "check_network",
    is_flag=True,
    help="Every record in the ledger, whoever owns or holds it (works on an empty node).",
)
@click.option("--repair", is_flag=True, help="Repair what is not healthy, now.")
@click.option("--no-verify", is_flag=True, help="Skip reading every block (faster).")
@common
def check(
    *,
    record_id: str | None,
    check_all: bool,
    check_network: bool,
    repair: bool,
    no_verify: bool,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Report holders, distinct hosts, missing indices, corrupt blocks and failed audits."""
    if sum([record_id is not None, check_all, check_network]) != 1:
        raise click.UsageError("give a RECORD_ID, --all or --network")
    root = _root(data_dir)
    rid = record_id_of(root, record_id) if record_id else None
    request = commands.Check(rid, repair, not no_verify, check_network)
    reply = call(root, request, CheckReply)
    emit(reply, as_json, _print_health)
    if any(not (row.after or row.health).readable for row in reply.records):
        sys.exit(EXIT_UNREADABLE)


def _print_health(reply: CheckReply) -> None:
    for row in reply.records:
        _print_row(row)


def _print_row(row: CheckRow) -> None:
    health = row.health
    verdict = "healthy" if health.healthy else "degraded"
    if not health.readable:
        verdict = "UNREADABLE"
    corrupt = "; ".join(f"{node[:16]} {list(found)}" for node, found in health.corrupt.items())
    click.echo(
        f"{health.record_id.hex()}  {verdict}  hosts {health.distinct_hosts}/{health.n}"
        f"  missing {list(health.missing) or '-'}  corrupt {corrupt or '-'}"
    )
    click.echo(f"    sites: {_site_verdict(health)}")
    for node, indices in sorted(health.holders.items()):
        site = health.sites.get(node)
        where = f"  (site {printable(site)})" if site else ""
        click.echo(f"    {node[:16]}  holds {list(indices)}{where}")
    for node, indices in sorted(health.unproven.items()):
        click.echo(f"    {node[:16]}  claims {list(indices)} but FAILED THE AUDIT (not counted)")
    for node, indices in sorted(health.unaudited.items()):
        click.echo(
            f"    {node[:16]}  claims {list(indices)}: counted unaudited (this node may not"
            " read the record; check from its owner or a holder to audit)"
        )
    if row.repair_error is not None:
        click.echo(f"    repair failed: {row.repair_error}")
    if row.repair is not None:
        repair = row.repair
        placed = ", ".join(f"{i}->{n.hex()[:16]}" for i, n in repair.placed.items())
        copied = ", ".join(f"{i}->{n.hex()[:16]}" for i, n in repair.copied.items())
        if placed:
            click.echo(f"    repaired: {placed}")
        if copied:
            click.echo(f"    copied to other sites: {copied}")
        if not placed and not copied:
            click.echo(f"    not repaired: {repair.note or 'nothing could be placed'}")
        for node, why in repair.failed.items():
            click.echo(f"    target {node[:16]} failed: {why}")
    if row.after is not None:
        click.echo(
            f"    now: hosts {row.after.distinct_hosts}/{row.after.n}, sites:"
            f" {_site_verdict(row.after)}"
        )


def _site_verdict(health: HealthReport) -> str:
    """Whether losing any one site loses the record, in words."""
    if not health.site_losses:
        return "none"
    worst = min(health.site_losses, key=lambda site: health.site_losses[site])
    spread = f"{len(health.site_losses)} of {health.network_sites} known"
    if health.site_losses[worst] >= health.k:
        return f"{spread}; survives the loss of any one"
    if health.site_safe:
        return f"{spread}; too few sites to survive the loss of one"
    name = f"node {worst[:16]}" if worst in health.holders else printable(worst)
    return f"{spread}; losing {name} leaves {health.site_losses[worst]} of {health.k} shards needed"


COMMANDS: list[click.Command] = [
    status,
    peers,
    keys,
    put,
    get,
    list_records,
    grant,
    revoke,
    attest,
    ledger,
    check,
    delete,
    gc,
    wallet.wallet,
]
