"""The `medvault` command."""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import click

from node.codec_demo import run_codec_demo
from storage.encoder import DEFAULT_K, DEFAULT_N, DEFAULT_SEGMENT_SIZE
from storage.errors import StorageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medvault")
def cli() -> None:
    """medvault: encrypted, erasure-coded patient records across hospitals."""


@cli.command()
@click.option("--size", default=3 * 2**20 + 12345, show_default=True, help="Record size in bytes.")
@click.option("-k", "k", default=DEFAULT_K, show_default=True, help="Shards needed to read.")
@click.option("-n", "n", default=DEFAULT_N, show_default=True, help="Shards written.")
@click.option("--segment-size", default=DEFAULT_SEGMENT_SIZE, show_default=True)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo data in this directory instead of a temporary one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def demo(*, size: int, k: int, n: int, segment_size: int, keep: Path | None, as_json: bool) -> None:
    """Store a record, destroy n-k shards per segment, read it back."""
    if size < 0:
        raise click.BadParameter("must be >= 0", param_hint="--size")
    try:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            report = run_codec_demo(keep, size, k, n, segment_size)
        else:
            with tempfile.TemporaryDirectory(prefix="medvault-demo-") as tmp:
                report = run_codec_demo(Path(tmp), size, k, n, segment_size)
    except (StorageError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report) | {"ok": report.ok}))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        sys.exit(1)


def main() -> None:
    cli()
