"""The membership verbs: `admit` (an admin certifies a node), `certificate`, `authority`.

None of them needs a running daemon: an authority key is meant to live offline,
with the admin, not on a node.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import nacl.signing

from node.cli.common import data_dir_option, json_option, open_data_dir, operator_errors, printable
from node.cli.verbs import expiry_ms, hex_bytes
from node.config.datadir import AUTHORITY_FILE, DataDirError
from node.config.keyfiles import KeyKind, create_signing_key, load_signing_key
from protocol.membership.certificate import (
    ISSUE_SKEW_MS,
    MAX_SITE_LENGTH,
    Certificate,
    CertificateError,
    from_text,
    issue,
)


def describe(cert: Certificate) -> dict[str, object]:
    return {
        "node_key": cert.node_key.hex(),
        "site": cert.site,
        "issued_at": cert.issued_at,
        "expires_at": cert.expires_at,
        "authority": cert.authority.hex(),
        "certificate": cert.text(),
    }


def _print(cert: Certificate, as_json: bool, written: Path | None = None) -> None:
    if as_json:
        click.echo(json.dumps({**describe(cert), "written": str(written) if written else None}))
        return
    until = "never" if not cert.expires_at else _when(cert.expires_at)
    click.echo(f"node key   {cert.node_key.hex()}")
    click.echo(f"site       {printable(cert.site)}")
    click.echo(f"issued     {_when(cert.issued_at)}   expires {until}")
    click.echo(f"authority  {cert.authority.hex()}")
    if written is not None:
        click.echo(
            f"written to {written} (give it to the node's operator:"
            " `medvault certificate install FILE`)"
        )
    else:
        click.echo(cert.text())


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


authority_key_option = click.option(
    "--authority-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The authority key file (default: authority.key in the data directory).",
)
output_option = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write it here."
)


def load_authority(path: Path | None, data_dir: Path | None) -> nacl.signing.SigningKey:
    if path is None:
        candidate = open_data_dir(data_dir).root / AUTHORITY_FILE
        if not candidate.exists():
            raise click.UsageError(
                "give --authority-key FILE (the network's authority key; `init --new-network`"
                f" wrote it as {AUTHORITY_FILE} in the first node's data directory)"
            )
        path = candidate
    return load_signing_key(path, KeyKind.AUTHORITY)


@click.command()
@click.argument("public_key")
@click.option("--site", required=True, help="The node's hospital or building, as it will count.")
@click.option(
    "--expires",
    default="365d",
    show_default=True,
    help="30d, 12h, an ISO date/time, or never (renew with another admit before then).",
)
@authority_key_option
@output_option
@data_dir_option
@json_option
@operator_errors
def admit(
    *,
    public_key: str,
    site: str,
    expires: str | None,
    authority_key: Path | None,
    output: Path | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Certify the node PUBLIC_KEY as a member at SITE (run by an admin, offline)."""
    node_key = hex_bytes(public_key, "PUBLIC_KEY")
    if not site or len(site) > MAX_SITE_LENGTH or not site.isprintable():
        raise click.BadParameter(f"1..{MAX_SITE_LENGTH} printable characters", param_hint="--site")
    authority = load_authority(authority_key, data_dir)
    now = int(time.time() * 1000)
    expires_at = 0 if expires == "never" else expiry_ms(expires)
    if expires_at >= 2**63:
        raise click.BadParameter("too far in the future", param_hint="--expires")
    cert = issue(authority, node_key, site, issued_at=now - ISSUE_SKEW_MS, expires_at=expires_at)
    if output is not None:
        write_new(output, cert.text())
    _print(cert, as_json, output)


def write_new(output: Path, line: str) -> None:
    """Write `line` to a new file: never through a symlink, never over a file."""
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise click.UsageError(f"{output} already exists") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(line + "\n")


@click.group()
def certificate() -> None:
    """This node's membership certificate."""


@certificate.command("install")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@data_dir_option
@json_option
@operator_errors
def certificate_install(*, file: Path, data_dir: Path | None, as_json: bool) -> None:
    """Keep FILE (from `medvault admit`) as this node's certificate (restart the node)."""
    target = open_data_dir(data_dir)
    try:
        cert = from_text(file.read_text(encoding="ascii", errors="replace"))
    except CertificateError as exc:
        raise DataDirError(f"{file}: {exc}") from None
    authorities = target.config().network.authorities
    if authorities and cert.authority not in authorities:
        raise DataDirError(f"{file} is not signed by an authority in this node's config")
    target.install_certificate(cert)
    if not cert.active(int(time.time() * 1000)):
        click.echo("warning: this certificate is not current: peers will refuse it", err=True)
    _print(cert, as_json, target.certificate_path)


@certificate.command("show")
@click.argument(
    "file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@data_dir_option
@json_option
@operator_errors
def certificate_show(*, file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show FILE, or this node's installed certificate."""
    if file is None:
        cert = open_data_dir(data_dir).certificate()
        if cert is None:
            raise DataDirError("this node has no certificate (`medvault certificate install`)")
    else:
        try:
            cert = from_text(file.read_text(encoding="ascii", errors="replace"))
        except CertificateError as exc:
            raise DataDirError(f"{file}: {exc}") from None
    _print(cert, as_json)


@click.group()
def authority() -> None:
    """Network authority keys (they sign membership certificates)."""


@authority.command("new")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the new key (mode 0600; keep it offline).",
)
@json_option
@operator_errors
def authority_new(*, output: Path, as_json: bool) -> None:
    """Make another admin's authority key; add its public key to every node's
    network.authorities."""
    key = create_signing_key(output, KeyKind.AUTHORITY, os.urandom(32))
    public = bytes(key.verify_key).hex()
    if as_json:
        click.echo(json.dumps({"public_key": public, "file": str(output)}))
        return
    click.echo(f"authority key {output} (keep it offline)")
    click.echo(f"  public key  {public}")


COMMANDS: list[click.Command] = [admit, certificate, authority]
