"""Eight real daemons started at the same moment all know each other within seconds.

As after a site-wide power cut: every daemon starts at once, in random order,
the bootstrap node often last (its peers dial it before it listens). Cold
rounds start without peers.json (a fresh network); warm rounds keep it (a
restart). Every round must end with every routing table holding the seven
others.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from node.dht.peerstore import PEERS_FILE
from node.sim.localnet import Daemon, Network

pytestmark = pytest.mark.slow

NODES = 8
ROUNDS = 6
DEADLINE = 60.0  # generous for a busy machine; the measured figure is in benchmarks.join


def test_daemons_started_together_form_one_network(tmp_path: Path, daemons: list[Daemon]) -> None:
    net = Network(tmp_path / "net", NODES, {"gossip": {"interval": 0.5}})
    daemons.extend(net.nodes)
    rng = random.Random(8)
    for round_number in range(ROUNDS):
        cold = round_number % 2 == 0
        if cold:
            for node in net.nodes:
                (node.data_dir / PEERS_FILE).unlink(missing_ok=True)
        order = [*rng.sample(range(1, NODES), NODES - 1), 0]  # the bootstrap node last
        net.start_together(order)
        net.wait_complete(DEADLINE)
        for node in net.nodes:
            assert node.stop() == 0
