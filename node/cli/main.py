"""The `medvault` command."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import nacl.signing
import trio

from node import logs
from node.cli import (
    audit,
    claims,
    emergency,
    http_tokens,
    membership,
    revocations,
    verbs,
    wallet,
    wallet_acts,
)
from node.cli.codec_demo import run_codec_demo
from node.cli.common import (
    DATA_DIR_HELP,
    byte_size,
    data_dir_option,
    json_option,
    open_data_dir,
    operator_errors,
    print_report,
    printable,
    reader_went_away,
)
from node.cli.network_demo import run_network_demo
from node.cli.verbs import hex_bytes
from node.config.addresses import PeerAddress, parse_host_port
from node.config.datadir import AUTHORITY_FILE, DataDir, DataDirError
from node.config.keyfiles import KeyKind, create_signing_key, read_secret
from node.config.storage import StorageConfig
from node.control.client import DaemonNotRunning, call
from node.daemon import run_until_signalled
from protocol.control import commands
from protocol.control.replies import StatusReply
from protocol.ids import node_id
from protocol.membership.certificate import ISSUE_SKEW_MS, Certificate, issue
from protocol.records.messages import MAX_SITE_LENGTH
from storage.codec.encoder import DEFAULT_K, DEFAULT_N, DEFAULT_SEGMENT_SIZE
from storage.errors import StorageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medvault")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_DIR_HELP
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every verb that reports).")
def cli(*, data_dir: Path | None, as_json: bool) -> None:
    """medvault: encrypted, erasure-coded patient records across hospitals.

    --data-dir and --json may come before the verb or after it.
    """


@cli.command()
@click.option("--size", default=3 * 2**20 + 12345, show_default=True, help="Record size in bytes.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the nodes' data directories (and demo.log) here instead of a temporary one.",
)
@json_option
def demo(*, size: int, keep: Path | None, as_json: bool) -> None:
    """Run 7 nodes for 3 hospitals on 127.0.0.1: store, lose a hospital, read back, repair."""
    if size < 0:
        raise click.BadParameter("must be >= 0", param_hint="--size")
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise click.BadParameter(f"{keep} is not empty", param_hint="--keep")
    with contextlib.ExitStack() as stack:
        if keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medvault-demo-")))
        else:
            root = keep
            root.mkdir(parents=True, exist_ok=True)
        logs.configure(logging.INFO, "json", root / "demo.log")
        report = trio.run(run_network_demo, root, size)
    print_report(report, as_json)


@cli.command("codec-demo")
@click.option("--size", default=3 * 2**20 + 12345, show_default=True, help="Record size in bytes.")
@click.option("-k", "k", default=DEFAULT_K, show_default=True, help="Shards needed to read.")
@click.option("-n", "n", default=DEFAULT_N, show_default=True, help="Shards written.")
@click.option(
    "--segment-size", default=DEFAULT_SEGMENT_SIZE, show_default=True, help="Bytes per segment."
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo data in this directory instead of a temporary one.",
)
@json_option
def codec_demo(
    *, size: int, k: int, n: int, segment_size: int, keep: Path | None, as_json: bool
) -> None:
    """One node, no network: store a record, destroy n-k shards per segment, read it back."""
    if size < 0:
        raise click.BadParameter("must be >= 0", param_hint="--size")
    try:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            report = run_codec_demo(keep, size, k, n, segment_size)
        else:
            with tempfile.TemporaryDirectory(prefix="medvault-codec-demo-") as tmp:
                report = run_codec_demo(Path(tmp), size, k, n, segment_size)
    except (StorageError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    print_report(report, as_json)


@cli.command()
@data_dir_option
@click.option("--new-network", is_flag=True, help="Create a new network key (first hospital).")
@click.option(
    "--network-key",
    "network_key_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Join an existing network with this network key file.",
)
@click.option(
    "--listen", default="127.0.0.1:7420", show_default=True, help="HOST:PORT to listen on."
)
@click.option(
    "--advertise",
    default=None,
    help="HOST:PORT peers dial to reach this node (needed when listening on 0.0.0.0).",
)
@click.option(
    "--bootstrap", multiple=True, help="A peer to contact: PUBLIC_KEY@HOST:PORT (repeatable)."
)
@click.option(
    "--site", default="", help="This node's hospital or building (placement spreads sites)."
)
@click.option(
    "--k", "k", type=int, default=DEFAULT_K, show_default=True, help="Shards a read needs."
)
@click.option(
    "--n", "n", type=int, default=DEFAULT_N, show_default=True, help="Shards per segment."
)
@click.option(
    "--happy", type=int, default=None, help="Distinct holders a put needs (default: n - k/2)."
)
@click.option(
    "--quota",
    default="0",
    show_default=True,
    help="Shard space this node offers (500G; 0: the disk).",
)
@click.option(
    "--authority-key",
    "authority_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --new-network: where to write the network's authority key (default:"
    " authority.key in the data directory; move it offline).",
)
@click.option(
    "--open-network",
    is_flag=True,
    help="With --new-network: no membership certificates (anyone with the network key"
    " is a member; for development).",
)
@click.option(
    "--authority",
    "authorities",
    multiple=True,
    help="Joining: the network's authority public key (hex; repeatable).",
)
@json_option
@operator_errors
def init(
    *,
    as_json: bool,
    data_dir: Path | None,
    new_network: bool,
    network_key_file: Path | None,
    listen: str,
    advertise: str | None,
    bootstrap: tuple[str, ...],
    site: str,
    k: int,
    n: int,
    happy: int | None,
    quota: str,
    authority_file: Path | None,
    open_network: bool,
    authorities: tuple[str, ...],
) -> None:
    """Create a node: identity key, network key and config.toml.

    One of --new-network (the first hospital: also the network's authority key and
    this node's certificate) or --network-key FILE with --authority KEY (joining; then
    an admin's `medvault admit` and `medvault certificate install`).
    """
    if new_network == (network_key_file is not None):
        raise click.UsageError("give exactly one of --new-network or --network-key FILE")
    if not new_network and (open_network or authority_file is not None):
        raise click.UsageError("--open-network and --authority-key go with --new-network")
    if new_network and authorities:
        raise click.UsageError("--authority is for joining; a new network makes its own")
    trusted = tuple(hex_bytes(key, "--authority") for key in authorities)
    _check_addresses(listen, advertise, bootstrap)
    storage = _storage_config(site, k, n, happy, quota)
    network_key = (
        os.urandom(32)
        if network_key_file is None
        else read_secret(network_key_file, KeyKind.NETWORK)
    )
    target = open_data_dir(data_dir)
    if len(site) > MAX_SITE_LENGTH or not site.isprintable():
        raise click.BadParameter(
            f"at most {MAX_SITE_LENGTH} printable characters", param_hint="--site"
        )
    if target.identity_path.exists():
        raise DataDirError(f"{target.root} is already initialised")
    authority_seed = os.urandom(32) if new_network and not open_network else None
    authority_path = authority_file or target.root / AUTHORITY_FILE
    if authority_seed is not None:
        trusted = (bytes(nacl.signing.SigningKey(authority_seed).verify_key),)
        if authority_file is not None:  # written first: a bad path leaves nothing behind
            create_signing_key(authority_file, KeyKind.AUTHORITY, authority_seed)
    identity = target.initialize(
        network_key=network_key,
        listen=listen,
        bootstrap=list(bootstrap),
        random_bytes=os.urandom,
        storage=storage,
        advertise=advertise,
        authorities=trusted,
    )
    public = bytes(identity.verify_key)
    cert = None
    if authority_seed is not None:
        authority = nacl.signing.SigningKey(authority_seed)
        if authority_file is None:
            create_signing_key(authority_path, KeyKind.AUTHORITY, authority_seed)
        own_site = site or f"node-{node_id(public).hex()[:8]}"
        issued = int(time.time() * 1000) - ISSUE_SKEW_MS
        cert = issue(authority, public, own_site, issued_at=issued)
        target.install_certificate(cert)
    made = InitReport(target, public, new_network, trusted, cert, authority_path, site)
    if as_json:
        click.echo(json.dumps(made.as_dict()))
    else:
        made.print()


def _check_addresses(listen: str, advertise: str | None, bootstrap: tuple[str, ...]) -> None:
    """Each address parses (a usage error naming its option), and a wildcard listen
    without --advertise is warned about."""
    addresses: list[tuple[str, str, Callable[[str], object]]] = [
        ("--listen", listen, parse_host_port)
    ]
    if advertise is not None:
        addresses.append(("--advertise", advertise, parse_host_port))
    addresses += [("--bootstrap", peer, PeerAddress.parse) for peer in bootstrap]
    for option, value, parse in addresses:
        try:
            parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    if parse_host_port(listen)[0] in ("0.0.0.0", "::", "") and advertise is None:
        click.echo(
            f"warning: listening on {listen} without --advertise: peers cannot dial a wildcard"
            " address; set network.advertise in config.toml to this node's reachable"
            " HOST:PORT before starting it",
            err=True,
        )


@dataclass(frozen=True)
class InitReport:
    """What `init` made, for the operator."""

    target: DataDir
    public: bytes
    new_network: bool
    trusted: tuple[bytes, ...]
    cert: Certificate | None
    authority_path: Path
    site: str

    def as_dict(self) -> dict[str, object]:
        return {
            "data_dir": str(self.target.root),
            "public_key": self.public.hex(),
            "node_id": node_id(self.public).hex(),
            "network_key": str(self.target.network_key_path),
            "new_network": self.new_network,
            "authorities": [key.hex() for key in self.trusted],
            "authority_key": str(self.authority_path) if self.cert is not None else None,
            "site": self.cert.site if self.cert is not None else self.site,
        }

    def print(self) -> None:
        click.echo(f"initialised {self.target.root}")
        click.echo(f"  public key  {self.public.hex()}")
        click.echo(f"  node id     {node_id(self.public).hex()}")
        if self.new_network:
            click.echo(
                f"  network key {self.target.network_key_path} (give a copy, securely, to each"
                " hospital)"
            )
        if self.cert is not None:
            click.echo(f"  authority   {self.trusted[0].hex()} (give it to each hospital too)")
            click.echo(
                f"  authority key {self.authority_path}: it admits nodes (`medvault admit`);"
                " move it offline"
            )
            click.echo(f"  certified at site {printable(self.cert.site)}")
        elif self.trusted:
            click.echo(
                "  next: send the public key above to an admin (`medvault admit KEY --site S`),"
                " then `medvault certificate install FILE`"
            )
        else:
            click.echo("  an open network: no membership certificates are asked", err=True)


def _storage_config(site: str, k: int, n: int, happy: int | None, quota: str) -> StorageConfig:
    """init's [storage] settings; a bad value is a usage error naming its option."""
    try:
        quota_bytes = byte_size(quota)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="--quota") from None
    try:
        StorageConfig(k=k, n=n, happy=k)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=["--k", "--n"]) from None
    try:
        return StorageConfig(
            site=site,
            k=k,
            n=n,
            happy=happy if happy is not None else max(k, n - k // 2),
            quota_bytes=quota_bytes,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--happy") from None


@cli.command("id")
@data_dir_option
@json_option
@operator_errors
def show_id(*, data_dir: Path | None, as_json: bool) -> None:
    """Show this node's public key, node id and peer address.

    From the running daemon when there is one (its address is the one it
    really bound and advertises), else from the data directory.
    """
    target = open_data_dir(data_dir)
    try:
        status = call(target.root, commands.Status(), StatusReply)
    except DaemonNotRunning:
        public = bytes(target.identity().verify_key)
        config = target.config()
        address = config.network.advertise or config.listen
    else:
        public, address = status.public_key, status.address
    info = {
        "public_key": public.hex(),
        "node_id": node_id(public).hex(),
        "address": address,
        "peer_address": f"{public.hex()}@{address}",
    }
    if as_json:
        click.echo(json.dumps(info))
    else:
        for key, value in info.items():
            click.echo(f"{key:13} {value}")


@cli.command()
@data_dir_option
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per event on stderr, as text or as JSON.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"]),
    default="info",
    show_default=True,
    help="The least important events logged.",
)
@click.option(
    "--trust-local-ledger",
    is_flag=True,
    help="Write this node's ledger entries without first confirming its feed with peers"
    " (only when its ledger is known to be current, e.g. the network's only node).",
)
@operator_errors
def run(
    *,
    data_dir: Path | None,
    log_format: logs.LogFormat,
    log_level: str,
    trust_local_ledger: bool,
) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM (a second one stops at once)."""
    logs.configure(getattr(logging, log_level.upper()), log_format)
    target = open_data_dir(data_dir)
    with target.lock():
        trio.run(run_until_signalled, target, trust_local_ledger)


wallet_acts.register(wallet.wallet)
for _command in [
    *verbs.COMMANDS,
    *membership.COMMANDS,
    *revocations.COMMANDS,
    *http_tokens.COMMANDS,
    *claims.COMMANDS,
    *emergency.COMMANDS,
    *audit.COMMANDS,
]:
    cli.add_command(_command)


def main() -> None:
    try:
        cli()
    except BrokenPipeError:
        reader_went_away()
