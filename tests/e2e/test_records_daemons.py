"""Eight real daemons on 127.0.0.1, driven only through the `medvault` CLI.

What the product promises, end to end: records of 1 KiB, 1 MiB and 64 MiB
survive the loss (kill -9) of n-k of their holders; grants decide who reads
(a patient with `get --as`), and a revoke stops new reads; repair restores n
distinct holders after two deaths, so later losses are survived too; a
daemon SIGKILLed during puts comes back consistent with every acknowledged
put readable; and no file any node wrote (stores, ledger, logs) holds a byte
of plaintext (each test record carries a marker string).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network, medvault

pytestmark = pytest.mark.slow

MARKER = b"E2E-PLAINTEXT-MARKER-7f3a"
K, N = 3, 5


def settings(repair_interval: float = 600) -> dict[str, dict[str, Any]]:
    return {
        "storage": {"k": K, "n": N, "happy": 4, "repair_interval": repair_interval},
        "gossip": {"interval": 0.5},
    }


@pytest.fixture
def network(tmp_path: Path, daemons: list[Daemon]) -> Iterator[Callable[..., Network]]:
    """Builds and starts an 8-node network; afterwards, scans it for plaintext."""
    built: list[Network] = []

    def build(repair_interval: float = 600) -> Network:
        net = Network(tmp_path / "net", 8, settings(repair_interval))
        daemons.extend(net.nodes)
        built.append(net)
        net.start_all()
        return net

    yield build
    for net in built:
        for node in net.nodes:
            node.kill()
        assert_no_plaintext(net.root)


def assert_no_plaintext(root: Path) -> None:
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_socket():
            scanned += 1
            assert MARKER not in path.read_bytes(), f"plaintext in {path}"
    assert scanned > 8 * 5  # identities, configs, ledgers, holdings, shard files, logs


def record_file(path: Path, size: int) -> bytes:
    """Random bytes with the marker every 64 KiB (and at the start)."""
    data = bytearray(os.urandom(size))
    for offset in range(0, max(1, size - len(MARKER)), 64 * 1024):
        data[offset : offset + len(MARKER)] = MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return bytes(data)


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll a CLI-observable condition, bounded (processes have no events to await)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def holders(net: Network, observer: int, record_id: str) -> list[int]:
    (report,) = net.cli(observer, "check", record_id, "--no-verify")["records"]
    return sorted(net.index_of(key) for key in report["health"]["holders"])


def listed(net: Network, index: int, record_id: str, *extra: str) -> bool:
    return any(r["record_id"] == record_id for r in net.cli(index, "ls", *extra)["records"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_records_survive_losing_n_minus_k_holders(
    tmp_path: Path, network: Callable[..., Network]
) -> None:
    net = network()
    reader = 7
    for size in (1024, 2**20, 64 * 2**20):
        source = tmp_path / "files" / f"record-{size}"
        data = record_file(source, size)
        put = net.cli(0, "put", str(source), "--grant", net.keys[reader], timeout=300)
        record_id = put["record_id"]
        assert put["size"] == size and put["holders"] == N
        held_by = holders(net, 0, record_id)
        assert len(held_by) == N  # n distinct nodes
        victims = [i for i in held_by if i not in (0, reader)][: N - K]
        for victim in victims:
            net.nodes[victim].kill()
        wait_until("the reader knows its grant", functools.partial(listed, net, reader, record_id))
        out = tmp_path / "out" / f"record-{size}"
        out.parent.mkdir(exist_ok=True)
        net.cli(reader, "get", record_id, "-o", str(out), timeout=300)
        assert out.stat().st_size == size
        assert digest(out) == hashlib.sha256(data).hexdigest()
        for victim in victims:  # they come back with their shards
            net.start(victim)


def test_grants_decide_who_reads(tmp_path: Path, network: Callable[..., Network]) -> None:
    net = network()
    patient_key, stranger_key = tmp_path / "patient.key", tmp_path / "stranger.key"
    patient = medvault("keys", "new", "-o", str(patient_key)).stdout.strip()
    medvault("keys", "new", "-o", str(stranger_key))
    source = tmp_path / "files" / "summary.pdf"
    data = record_file(source, 300_000)
    record_id = net.cli(0, "put", str(source), "--patient", patient)["record_id"]

    reader = 5
    wait_until(
        "the patient's grant reaches the reader",
        lambda: listed(net, reader, record_id, "--as", str(patient_key)),
    )
    out = tmp_path / "patient-copy.pdf"
    net.cli(reader, "get", record_id, "-o", str(out), "--as", str(patient_key))
    assert out.read_bytes() == data

    refused = net.run(
        reader, "get", record_id, "-o", str(tmp_path / "s"), "--as", str(stranger_key)
    )
    assert refused.returncode == 1 and "no grant for key" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()

    net.cli(reader, "attest", record_id, "--as", str(patient_key))
    wait_until(
        "the attestation reaches the owner",
        lambda: any(r["attested_by"] == [patient] for r in net.cli(0, "ls")["records"]),
    )

    net.cli(0, "revoke", record_id, patient)

    def revoked_on_reader() -> bool:
        entries = net.cli(reader, "ledger", "--record", record_id)["entries"]
        return any(e["type"] == "revoke" for e in entries)

    wait_until("the revoke reaches the reader", revoked_on_reader)
    again = net.run(reader, "get", record_id, "-o", str(tmp_path / "r"), "--as", str(patient_key))
    assert again.returncode == 1 and "no grant for key" in again.stderr


def test_repair_after_two_deaths_then_survive_two_more(
    tmp_path: Path, network: Callable[..., Network]
) -> None:
    net = network(repair_interval=2)
    source = tmp_path / "files" / "imaging.dcm"
    data = record_file(source, 3 * 2**20 + 777)
    record_id = net.cli(0, "put", str(source))["record_id"]
    first = holders(net, 0, record_id)
    dead = [i for i in first if i != 0][:2]
    dead_keys = {net.keys[i] for i in dead}
    for index in dead:
        net.nodes[index].kill()

    def repaired() -> bool:
        (report,) = net.cli(0, "check", record_id, "--no-verify")["records"]
        health = report["health"]
        return health["healthy"] and not dead_keys & set(health["holders"])

    wait_until("the background repair restores n distinct holders", repaired, timeout=120)

    # The dead machines are replaced: same addresses, empty disks.
    for index in dead:
        net.replace(index)
        net.start(index)
        assert net.cli(index, "status")["records_held"] == 0

    # Losing n-k other holders now still leaves the record readable.
    current = holders(net, 0, record_id)
    assert len(current) == N
    for index in [i for i in current if i != 0][: N - K]:
        net.nodes[index].kill()
    out = tmp_path / "imaging-copy.dcm"
    net.cli(0, "get", record_id, "-o", str(out))
    assert out.read_bytes() == data


def test_a_daemon_killed_during_puts_comes_back_consistent(
    tmp_path: Path, network: Callable[..., Network]
) -> None:
    net = network()
    writer = 1
    files = []
    for number in range(8):
        path = tmp_path / "files" / f"note-{number}"
        record_file(path, 6 * 2**20 + number)
        files.append(path)
    acknowledged: list[tuple[Path, str]] = []
    failed: list[str] = []

    def upload() -> None:
        for path in files:
            done = net.run(writer, "put", str(path), "--json")
            if done.returncode == 0:
                acknowledged.append((path, json.loads(done.stdout)["record_id"]))
            else:
                failed.append(done.stderr.strip())

    uploader = threading.Thread(target=upload)
    uploader.start()
    net.nodes[writer].wait_for("upload started", timeout=120, nth=4)
    net.nodes[writer].kill()  # SIGKILL in the middle of the fourth put
    uploader.join(timeout=300)
    assert len(acknowledged) == 3 and len(failed) == 5
    assert all(line.startswith("Error: ") for line in failed)

    net.start(writer)
    mine = {r["record_id"] for r in net.cli(writer, "ls")["records"]}
    assert {record_id for _, record_id in acknowledged} <= mine
    # Nothing half-recorded: every record entry of this node has the owner's grant.
    entries = net.cli(writer, "ledger")["entries"]
    recorded = {e["body"]["record_id"] for e in entries if e["type"] == "record"}
    granted = {
        e["body"]["record_id"]
        for e in entries
        if e["type"] == "grant" and e["body"]["grantee"] == net.keys[writer]
    }
    assert recorded == granted == mine
    for path, record_id in acknowledged:
        out = tmp_path / "out" / path.name
        out.parent.mkdir(exist_ok=True)
        net.cli(writer, "get", record_id, "-o", str(out))
        assert out.read_bytes() == path.read_bytes()
    reports = net.cli(writer, "check", "--all")["records"]
    assert reports and all(r["health"]["readable"] for r in reports)


def test_sigterm_during_a_put_stops_cleanly_and_records_nothing(
    tmp_path: Path, network: Callable[..., Network]
) -> None:
    net = network()
    writer = 2
    source = tmp_path / "files" / "large"
    record_file(source, 48 * 2**20)
    outcome: list[Any] = []
    uploader = threading.Thread(
        target=lambda: outcome.append(net.run(writer, "put", str(source), "--json"))
    )
    uploader.start()
    net.nodes[writer].wait_for("upload started", timeout=60)
    assert net.nodes[writer].stop() == 0  # SIGTERM: the daemon exits cleanly, mid-put
    uploader.join(timeout=120)
    (done,) = outcome
    assert done.returncode == 1 and done.stderr.startswith("Error: ")
    assert any(e["event"] == "stopped" for e in net.nodes[writer].events)
    net.start(writer)
    assert net.cli(writer, "ls")["records"] == []
    assert net.cli(writer, "ledger")["entries"] == []
