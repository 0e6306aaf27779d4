"""`medvault http token new|ls|revoke`: the bearer tokens of the HTTP API.

They work on the data directory's token file directly, whether or not the
node runs (a running node rereads the file when it changes), so a token
revoked here is refused by the next request.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from node.cli.common import common, open_data_dir
from node.cli.verbs import when
from node.http.tokens import Scope, Token, TokenStore


def _store(data_dir: Path | None) -> TokenStore:
    root = open_data_dir(data_dir)
    root.config()  # a data directory medvault made, not any folder
    return TokenStore(root.root, clock_ms=lambda: int(time.time() * 1000))


def _shown(token: Token) -> dict[str, object]:
    return {
        "id": token.token_id,
        "name": token.name,
        "scope": token.scope.label,
        "created_at": token.created_ms,
    }


@click.group()
def http() -> None:
    """The HTTP API (FHIR, JSON, /metrics, status page): see docs/http.md."""


@http.group()
def token() -> None:
    """Bearer tokens: each EHR or monitoring system gets its own, with the least scope."""


@token.command("new")
@click.option("--name", required=True, help="Who uses it, e.g. EHR-A or prometheus.")
@click.option(
    "--scope",
    type=click.Choice(["read", "write", "admin"]),
    required=True,
    help="read: find and retrieve documents, status, metrics; write: also store documents;"
    " admin: also check and repair records.",
)
@common
def token_new(*, name: str, scope: str, data_dir: Path | None, as_json: bool) -> None:
    """Make a token and print it, once: only its hash is kept."""
    made, text = _store(data_dir).new(name, Scope.parse(scope))
    if as_json:
        click.echo(json.dumps(_shown(made) | {"token": text}))
        return
    click.echo(text)
    click.echo(
        f"token {made.name!r} ({made.scope.label}, id {made.token_id}): shown once, store it"
        " in the client's secret store",
        err=True,
    )


@token.command("ls")
@common
def token_ls(*, data_dir: Path | None, as_json: bool) -> None:
    """The tokens (names, scopes, ids; never the tokens themselves)."""
    tokens = _store(data_dir).all()
    if as_json:
        click.echo(json.dumps([_shown(t) for t in tokens]))
        return
    if not tokens:
        click.echo("no tokens (medvault http token new --name NAME --scope SCOPE)")
    for found in tokens:
        click.echo(
            f"{found.token_id}  {found.scope.label:<5}  {when(found.created_ms)}  {found.name}"
        )


@token.command("revoke")
@click.argument("name")
@common
def token_revoke(*, name: str, data_dir: Path | None, as_json: bool) -> None:
    """Revoke the token called NAME (or with id NAME); the running node refuses it at once."""
    gone = _store(data_dir).revoke(name)
    if as_json:
        click.echo(json.dumps(_shown(gone)))
    else:
        click.echo(f"revoked token {gone.name!r} ({gone.token_id})")


COMMANDS = [http]
