"""Startup failures and broken pipes through the real command: one line, the right exit code."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from node.config.datadir import DataDir
from tests.node.test_control_cli import controlled
from tests.protocol.keys import NETWORK


def medvault(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def initialised(root: Path, listen: str = "127.0.0.1:0") -> Path:
    DataDir(root).initialize(
        network_key=NETWORK, listen=listen, bootstrap=[], random_bytes=os.urandom
    )
    return root


def bad_config(root: Path) -> str:
    config = root / "config.toml"
    config.write_text(config.read_text().replace("happy = 6", "happy = 60"))
    return "config.toml: storage: need k <= happy <= n, got happy=60"


def empty_config(root: Path) -> str:
    (root / "config.toml").write_text("")
    return "config.toml: network.listen is missing"


def config_without_listen(root: Path) -> str:
    config = root / "config.toml"
    config.write_text(re.sub(r"(?m)^listen = .*$", "", config.read_text()))
    return "config.toml: network.listen is missing"


def open_key_file(root: Path) -> str:
    (root / "identity.key").chmod(0o644)
    return "chmod 600"


def unreadable_holdings(root: Path) -> str:
    (root / "holdings.sqlite").write_bytes(b"not a database" * 500)
    return "not a usable holdings database"


@pytest.mark.parametrize(
    "harm",
    [bad_config, empty_config, config_without_listen, open_key_file, unreadable_holdings],
)
def test_a_node_that_cannot_start_says_why_in_one_line(tmp_path: Path, harm: object) -> None:
    root = initialised(tmp_path / "node")
    expected = harm(root)  # type: ignore[operator]
    done = medvault("run", "--data-dir", str(root))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], lines


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        root = initialised(tmp_path / "node", listen=f"127.0.0.1:{port}")
        done = medvault("run", "--data-dir", str(root))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


async def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=5, served=1) as net:
        command = (
            f"set -o pipefail; {sys.executable} -m node status --data-dir {net.dirs[0]} | head -1"
        )
        done = await trio.run_process(
            ["bash", "-c", command], capture_stdout=True, capture_stderr=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == b"" and len(done.stdout.splitlines()) == 1
