"""The product path stays free of test tooling, and the simulator room tidies up after itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.sim import localnet
from node.sim.network import deterministic_scheduling

TEST_TOOLING = ("pytest", "_pytest", "hypothesis", "trio.testing", "node.sim")


def test_the_command_imports_no_test_tooling() -> None:
    """What `medvault --help` loads, in a fresh interpreter (pytest is installed, not imported)."""
    probe = (
        "import sys, contextlib, io\n"
        "from node.cli.main import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli(['--help'])\n"
        "import json; print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(done.stdout)
    assert "node.daemon" in loaded  # the probe did load the command
    assert [m for m in loaded if m.startswith(TEST_TOOLING)] == []


def test_deterministic_scheduling_is_undone_when_the_block_ends() -> None:
    import trio._core._run as run  # noqa: PLC0415 - the private hook under test

    allowed, state = run._ALLOW_DETERMINISTIC_SCHEDULING, run._r.getstate()
    with deterministic_scheduling(5):
        assert getattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING") is True  # noqa: B009
        run._r.random()  # the simulation draws from trio's scheduling RNG
    assert allowed == run._ALLOW_DETERMINISTIC_SCHEDULING
    assert run._r.getstate() == state


def test_localnet_runs_the_installed_command_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository: no path or cwd of it is needed
    done = localnet.medvault("init", "--data-dir", str(tmp_path / "n"), "--new-network")
    assert done.returncode == 0
    assert (tmp_path / "n" / "config.toml").exists()
