"""A 256 MiB record through a real daemon's HTTP API keeps its memory bounded, like the CLI's.

The body goes up as a generator and comes down hashed chunk by chunk, so
neither this test nor the daemon ever holds the record. Each daemon's peak
resident memory (VmHWM, reset right before the operation) may rise at most
MEMORY_BOUND_MIB above what it used at the start: the writer holds a few
segments and their shards in flight, the reader a few fetched segments. With
5 daemons, k=3, n=5 and 1 MiB segments, `python -m benchmarks.http` measured
a rise of about 120 MiB for an HTTP put and 100 MiB for a control-socket put
of 256 MiB, and about 30 MiB for a get either way (docs/http-performance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from node.control.client import call
from node.sim import localhttp
from node.sim.localhttp import Hashed, seeded_chunks, serve_http
from node.sim.localnet import Daemon, Network
from node.sim.procstat import PeakWatch
from protocol.control.commands import ListRecords
from protocol.control.replies import RecordsReply
from tests.e2e.test_put_daemons import wait_until

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
RECORD = 256 * MIB
MEMORY_BOUND_MIB = 192
SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 5},
    "gossip": {"interval": 0.2},
}


def pid(daemon: Daemon) -> int:
    assert daemon.proc is not None
    return daemon.proc.pid


def test_a_256_mib_record_streams_through_http_in_bounded_memory(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 5, SETTINGS)
    writer = serve_http(net, 0, "write", "EHR-A")
    reader = serve_http(net, 1, "read", "EHR-B")
    daemons.extend(net.nodes)
    net.start_all()
    for index in (0, 1):
        net.nodes[index].wait_for("http listening")
    body = Hashed(seeded_chunks(RECORD, seed=15, chunk=MIB))

    with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
        with PeakWatch(pid(net.nodes[0])) as put_memory:
            record_id, _ = localhttp.put(client, writer, body, RECORD, grant=net.keys[1])
        assert body.size == RECORD

        def known() -> bool:  # node1's grant arrived by gossip
            rows = call(net.nodes[1].data_dir, ListRecords(None), RecordsReply).records
            return any(row.record_id.hex() == record_id for row in rows)

        wait_until(known)
        with PeakWatch(pid(net.nodes[1])) as get_memory:
            digest, size, _ = localhttp.get(client, reader, record_id)

    print(f"writer +{put_memory.growth:.0f} MiB, reader +{get_memory.growth:.0f} MiB")  # for -s
    assert (size, digest) == (RECORD, body.hexdigest())
    assert put_memory.growth < MEMORY_BOUND_MIB, (
        f"the writer rose {put_memory.growth:.0f} MiB above {put_memory.before:.0f} MiB"
    )
    assert get_memory.growth < MEMORY_BOUND_MIB, (
        f"the reader rose {get_memory.growth:.0f} MiB above {get_memory.before:.0f} MiB"
    )
