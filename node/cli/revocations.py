"""`medvault membership`: an admin revokes a node (offline), a node publishes it.

`revoke` signs a revocation with the authority key, like `admit`, and needs
no daemon; `publish` hands it to the running node, which applies it and
gossips it to the network; `revocations` lists the nodes a node refuses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from node.cli.common import common, data_dir_option, json_option, open_data_dir, operator_errors
from node.cli.membership import authority_key_option, load_authority, output_option, write_new
from node.cli.verbs import emit, hex_bytes, when
from node.control.client import call
from protocol.control import commands
from protocol.control.replies import RevocationPublished, RevocationsReply
from protocol.membership.revocation import Revocation, RevocationError, from_text, revoke


def describe(revocation: Revocation) -> dict[str, object]:
    return {
        "node_key": revocation.node_key.hex(),
        "revoked_at": revocation.revoked_at,
        "authority": revocation.authority.hex(),
        "revocation": revocation.text(),
    }


@click.group()
def membership() -> None:
    """Remove a member: an admin signs a revocation, any node publishes it."""


@membership.command("revoke")
@click.argument("node_key")
@authority_key_option
@output_option
@data_dir_option
@json_option
@operator_errors
def membership_revoke(
    *,
    node_key: str,
    authority_key: Path | None,
    output: Path | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Sign the revocation of node NODE_KEY (run by an admin, offline); then
    `medvault membership publish FILE` on any node."""
    key = hex_bytes(node_key, "NODE_KEY")
    authority = load_authority(authority_key, data_dir)
    if key == bytes(authority.verify_key):
        raise click.BadParameter("an authority's key cannot be revoked", param_hint="NODE_KEY")
    revocation = revoke(authority, key, revoked_at=int(time.time() * 1000))
    if output is not None:
        write_new(output, revocation.text())
    if as_json:
        click.echo(json.dumps({**describe(revocation), "written": str(output) if output else None}))
        return
    click.echo(f"node key   {key.hex()}   revoked {when(revocation.revoked_at)}")
    click.echo(f"authority  {revocation.authority.hex()}")
    if output is not None:
        click.echo(f"written to {output} (publish it: `medvault membership publish {output}`)")
    else:
        click.echo(revocation.text())


@membership.command("publish")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@common
def membership_publish(*, file: Path, data_dir: Path | None, as_json: bool) -> None:
    """Apply the revocation in FILE at the running node and gossip it to the network."""
    try:
        revocation = from_text(file.read_text(encoding="ascii", errors="replace"))
    except RevocationError as exc:
        raise RevocationError(f"{file}: {exc}") from None
    root = open_data_dir(data_dir).root
    reply = call(root, commands.PublishRevocation(revocation.encode()), RevocationPublished)

    def text(r: RevocationPublished) -> None:
        if r.new:
            click.echo(
                f"node {r.node_key.hex()} revoked: its connections closed, pushed to"
                f" {r.pushed_to} connected peer(s), who pass it on"
            )
        else:
            click.echo(f"node {r.node_key.hex()} was revoked already: nothing changed")

    emit(reply, as_json, text)


@membership.command("revocations")
@common
def membership_revocations(*, data_dir: Path | None, as_json: bool) -> None:
    """List the nodes the running node refuses (revoked, or in network.revoked)."""
    reply = call(open_data_dir(data_dir).root, commands.Revocations(), RevocationsReply)

    def text(r: RevocationsReply) -> None:
        if not r.revocations:
            click.echo("no node is revoked")
        for row in r.revocations:
            if row.source == "config":
                click.echo(f"{row.node_key.hex()}  listed in network.revoked")
            else:
                click.echo(
                    f"{row.node_key.hex()}  revoked {when(row.revoked_at)}"
                    f" by {row.authority.hex()[:16]}"
                )

    emit(reply, as_json, text)


COMMANDS: list[click.Command] = [membership]
