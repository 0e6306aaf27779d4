"""The daemon names its Reed-Solomon backend once at start, and refuses a bad choice in one
line (MEDVAULT_RS_BACKEND)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config.fields import ConfigError
from node.daemon import choose_erasure_backend
from storage.codec import erasure, isal
from tests.node.test_cli_failures import initialised
from tests.node.test_control_cli import controlled

HAVE_ISAL = not isinstance(isal.load(), isal.Unavailable)


@pytest.fixture(autouse=True)
def _restore_selection() -> Iterator[None]:
    yield
    erasure.select_backend("auto")


def test_the_choice_is_described() -> None:
    assert choose_erasure_backend({erasure.BACKEND_VARIABLE: "numpy"}) == "numpy"
    described = choose_erasure_backend({})
    assert described.startswith("isal (" if HAVE_ISAL else "numpy (ISA-L unavailable")


def test_a_bad_choice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="MEDVAULT_RS_BACKEND: unknown Reed-Solomon backend"):
        choose_erasure_backend({erasure.BACKEND_VARIABLE: "fastest"})


def run_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def test_a_node_with_a_bad_backend_says_why_in_one_line(tmp_path: Path) -> None:
    root = initialised(tmp_path / "node")
    done = subprocess.run(
        [sys.executable, "-m", "node", "run", "--data-dir", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=run_env(MEDVAULT_RS_BACKEND="gpu"),
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: MEDVAULT_RS_BACKEND: unknown Reed-Solomon backend 'gpu';"
        " choose one of ('auto', 'isal', 'numpy')"
    ]


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_the_daemon_logs_its_codec_once_at_start(tmp_path: Path, backend: str) -> None:
    root = initialised(tmp_path / "node")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "node", "run", "--data-dir", str(root), "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
        env=run_env(MEDVAULT_RS_BACKEND=backend),
    )
    assert daemon.stderr is not None
    events = []
    try:
        for line in daemon.stderr:  # ends at the first "joined" or when the daemon exits
            events.append(json.loads(line))
            if events[-1].get("event") == "joined":
                break
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=60)
    codecs = [e for e in events if e.get("event") == "erasure codec"]
    assert len(codecs) == 1, events
    expected = "numpy" if backend == "numpy" or not HAVE_ISAL else "isal ("
    assert codecs[0]["backend"].startswith(expected)


async def test_status_names_the_codec_in_use(tmp_path: Path) -> None:
    erasure.select_backend("numpy")
    async with controlled(tmp_path, count=2, served=1) as net:
        forced = await net.ok(0, "status")
        erasure.select_backend("auto")
        chosen = await net.ok(0, "status")
    assert forced["erasure_codec"] == "numpy"
    assert chosen["erasure_codec"].startswith("isal (" if HAVE_ISAL else "numpy (ISA-L")
