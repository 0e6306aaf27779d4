"""`medvault demo`: the multi-node network demo, run as the README runs it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli.main import cli
from node.cli.network_demo import MARKER
from node.logs import ROOT


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The demo points medvault's logger at its demo.log; put it back afterwards."""
    logger = logging.getLogger(ROOT)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


def test_demo_loses_a_hospital_and_still_reads_the_record(
    tmp_path: Path, restore_logging: None
) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--size", "1000000", "--keep", str(tmp_path / "net"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["intact"] and report["stranger_refused"]
    assert report["stopped"] == ["node3", "node4"]
    lost = [i for i, where in report["placement"].items() if "hospital-B" in where]
    assert 1 <= len(lost) <= report["n"] - report["k"]
    assert len(set(report["placement"].values())) == report["n"]
    assert report["hosts_after"] == report["n"] and len(report["repaired"]) == len(lost)
    # The scan is real: it covered the stores, ledgers and the log, and the marker is absent.
    kept = tmp_path / "net"
    assert (kept / "demo.log").stat().st_size > 0
    assert report["files_scanned"] > 20 and report["plaintext_found"] == []
    for path in kept.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert MARKER not in path.read_bytes(), path


def test_demo_text_says_what_it_showed(tmp_path: Path, restore_logging: None) -> None:
    result = CliRunner().invoke(cli, ["demo", "--size", "200000", "--keep", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "OK"
    assert any(line.startswith("read ") and "intact" in line for line in lines)
    assert any(line.startswith("stopped  all of hospital-B") for line in lines)


def test_json_before_the_verb_works_too(restore_logging: None) -> None:
    result = CliRunner().invoke(cli, ["--json", "demo", "--size", "1000"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
