"""Usage errors are found before any daemon is asked: exit 2 and the option named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli.main import cli
from node.config.datadir import DataDir
from tests.protocol.keys import NETWORK

KEY = "ab" * 32


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An initialised data directory with no daemon behind it."""
    root = tmp_path / "node"
    DataDir(root).initialize(
        network_key=NETWORK, listen="127.0.0.1:0", bootstrap=[], random_bytes=os.urandom
    )
    return root


def usage(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 2, result.output
    return result.output


def test_expires_without_a_grant_is_a_usage_error(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"x")
    assert "--expires applies to --grant" in usage(data_dir, "put", str(source), "--expires", "30d")
    patient_only = usage(data_dir, "put", str(source), "--patient", KEY, "--expires", "30d")
    assert "--expires applies to --grant" in patient_only


@pytest.mark.parametrize("when", ["0s", "0d", "00m", "2000-01-01"])
def test_an_expiry_that_has_passed_is_a_usage_error(
    data_dir: Path, tmp_path: Path, when: str
) -> None:
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"x")
    for args in (["put", str(source), "--grant", KEY], ["grant", "cd" * 32, KEY]):
        output = usage(data_dir, *args, "--expires", when)
        assert "Invalid value for --expires" in output
