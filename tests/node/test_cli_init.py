"""`medvault init` takes what an operator sets at install time, and says what it cannot."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli.common import byte_size
from node.cli.main import cli


def init(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["init", "--data-dir", str(tmp_path / "n"), "--new-network", *args]
    )
    return result.exit_code, result.stdout, result.stderr


def config(tmp_path: Path) -> dict[str, dict[str, object]]:
    return tomllib.loads((tmp_path / "n" / "config.toml").read_text())


def test_erasure_code_quota_and_advertise_go_into_the_config(tmp_path: Path) -> None:
    code, _, err = init(
        tmp_path,
        "--listen", "0.0.0.0:7420", "--advertise", "a1.example:7420",
        "--k", "3", "--n", "6", "--happy", "5", "--quota", "2G", "--site", "hospital-a",
    )  # fmt: skip
    assert code == 0 and err == "", err
    written = config(tmp_path)
    assert written["network"]["advertise"] == "a1.example:7420"
    wanted = {"k": 3, "n": 6, "happy": 5, "quota_bytes": 2 * 1024**3, "site": "hospital-a"}
    assert {key: written["storage"][key] for key in wanted} == wanted
    shown = CliRunner().invoke(cli, ["id", "--data-dir", str(tmp_path / "n"), "--json"])
    assert json.loads(shown.stdout)["address"] == "a1.example:7420"  # not the wildcard


def test_a_wildcard_listen_without_advertise_is_warned_about(tmp_path: Path) -> None:
    code, _, err = init(tmp_path, "--listen", "0.0.0.0:7420")
    assert code == 0 and err.startswith("warning: listening on 0.0.0.0:7420 without --advertise")


def test_happy_defaults_between_k_and_n(tmp_path: Path) -> None:
    assert init(tmp_path, "--k", "2", "--n", "4")[0] == 0
    assert config(tmp_path)["storage"]["happy"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "5", "--n", "4"], "need 1 <= k <= n <= 255"),
        (["--happy", "2"], "need k <= happy <= n"),
        (["--quota", "lots"], "is not a size"),
        (["--advertise", "nohost"], "expected HOST:PORT"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = init(tmp_path, *args)
    assert code == 2 and message in err
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--happy", "2"], "--happy"),
        (["--bootstrap", "ab" * 32 + "@h:1", "--bootstrap", "nope"], "--bootstrap"),
        (["--listen", "nohost"], "--listen"),
        (["--advertise", "nohost"], "--advertise"),
        (["--k", "5", "--n", "4"], "'--k' / '--n'"),
        (["--quota", "lots"], "--quota"),
    ],
)
def test_a_bad_value_names_its_option(tmp_path: Path, args: list[str], option: str) -> None:
    code, _, err = init(tmp_path, *args)
    assert code == 2 and f"Error: Invalid value for {option}: " in err, err


def test_byte_sizes() -> None:
    assert [byte_size(s) for s in ["0", "1500", "64K", "500M", "2G", "1T", "3GiB"]] == [
        0, 1500, 64 * 1024, 500 * 1024**2, 2 * 1024**3, 1024**4, 3 * 1024**3,
    ]  # fmt: skip
