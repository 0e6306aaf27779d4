"""`medvault --json VERB` prints JSON for every verb that reports, like `VERB --json`
(`demo`: tests/node/test_network_demo.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from node.cli.main import cli


def as_json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["--json", *args])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_json_before_the_verb_is_honoured_by_every_verb(tmp_path: Path) -> None:
    created = as_json("keys", "new", "-o", str(tmp_path / "alice.key"))
    assert created["key_file"] == str(tmp_path / "alice.key")
    shown = as_json("keys", "show", str(tmp_path / "alice.key"))
    assert shown["public_key"] == created["public_key"]

    data_dir = tmp_path / "node"
    assert as_json("init", "--data-dir", str(data_dir), "--new-network")["new_network"] is True
    assert "peer_address" in as_json("id", "--data-dir", str(data_dir))

    assert as_json("codec-demo", "--size", "5000", "-k", "2", "-n", "3")["ok"] is True
