"""The local-daemon harness's ports and log reading (node.sim.localnet).

CI failed once when a port picked for a daemon's HTTP listener was taken, between the
pick and the daemon's bind, by another daemon's outgoing connection: ports handed out
now lie below the kernel's ephemeral range, and a daemon that exits with a plain-text
error is reported with that error instead of a JSON decoding failure.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from node.sim import localnet
from node.sim.localnet import Daemon, free_ports


def test_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    start = localnet._ephemeral_start()
    seen: set[int] = set()
    for _ in range(20):
        ports = free_ports(5)
        assert all(localnet.LOWEST_PORT <= port < start for port in ports)
        assert not seen & set(ports)
        seen |= set(ports)
    assert len(seen) == 100


def test_a_port_someone_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, busy, 0])

        class Scripted:
            def randrange(self, low: int, high: int) -> int:
                chosen = next(picks)
                return chosen or low + 7

        monkeypatch.setattr(localnet, "_pick", Scripted())
        monkeypatch.setattr(localnet, "_ephemeral_start", lambda: 65536)
        monkeypatch.setattr(localnet, "_handed_out", set())
        (port,) = free_ports(1)
    assert port == localnet.LOWEST_PORT + 7


def test_a_daemon_that_fails_in_plain_text_is_reported_with_its_words(tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text(
        "import sys\n"
        "sys.stderr.write('Error: cannot listen on 127.0.0.1:1: Address already in use\\n')\n"
        "sys.exit(2)\n"
    )
    daemon = Daemon(tmp_path / "node")
    daemon.program = [sys.executable, str(script)]
    daemon.start()
    with pytest.raises(AssertionError, match=r"daemon exited before.*Address already in use"):
        daemon.wait_for("control socket ready")
    assert daemon.stop() == 2
    assert daemon.events[0]["event"] == "unstructured output"
