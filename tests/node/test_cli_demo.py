from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from node.cli.codec_demo import MARKER
from node.cli.main import cli


def test_demo_stores_damages_and_reads_back(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "codec-demo",
            "--size",
            "70000",
            "--segment-size",
            "16384",
            "--keep",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["intact"] and report["other_key_refused"]
    assert report["segments"] == 5
    assert report["deleted"] == [0, 1, 2] and report["corrupted"] == [3]
    assert report["quarantined"] == 5
    # The kept data dir holds ciphertext only.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert MARKER not in path.read_bytes(), path


def test_demo_human_output() -> None:
    result = CliRunner().invoke(cli, ["codec-demo", "--size", "5000", "-k", "2", "-n", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("OK")
    assert "refused" in result.output


def test_bad_parameters_give_one_clear_line() -> None:
    result = CliRunner().invoke(cli, ["codec-demo", "-k", "5", "-n", "3"])
    assert result.exit_code != 0
    assert "k <= n" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["codec-demo", "--size", "-3"])
    assert result.exit_code != 0
    assert "--size" in result.output


def test_counts_of_one_are_singular() -> None:
    result = CliRunner().invoke(cli, ["codec-demo", "--size", "5000", "-k", "2", "-n", "3"])
    assert result.exit_code == 0, result.output
    assert "in 1 segment, k=2" in result.output
    assert "1 corrupt block quarantined" in result.output
