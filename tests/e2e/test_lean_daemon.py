"""An idle `medvault run` daemon on ISA-L never maps numpy (issue 17: idle memory).

The in-process probe (tests/node/test_lean_start.py) checks the imports; this
looks at a real daemon's address space, after start-up (which loads libisal
and runs its self-test), for numpy's compiled core.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.sim.localnet import Daemon, Network
from storage.codec import isal

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    isinstance(isal.load(), isal.Unavailable), reason="no libisal: numpy is the backend"
)
def test_an_idle_daemon_on_isal_has_no_numpy_mapped(tmp_path: Path, daemons: list[Daemon]) -> None:
    net = Network(tmp_path / "net", 1, {})
    daemons.extend(net.nodes)
    net.start(0)  # returns once the control socket is ready: start-up is over
    proc = net.nodes[0].proc
    assert proc is not None
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "libisal" in maps  # the backend really is loaded
    assert "numpy" not in maps
