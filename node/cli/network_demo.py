"""`medvault demo`: a local network of real nodes on 127.0.0.1, end to end.

Seven nodes stand in for three hospitals (sites A, B, C). Each is initialised
like a real one (its own data directory, identity and config) and runs the
daemon's own `serve_node`, so TCP, the secret handshake, the DHT, gossip,
disk stores and the control socket are all the real ones. The demo stores a
record from hospital A with a grant to a patient, shows which node and site
took each shard, stops every node of hospital B, reads the record back as
the patient at hospital C (decrypting here, with the patient's key), shows
that a stranger's key is refused, repairs the record (from its owner's node) onto the surviving
nodes, and scans every file the nodes wrote (logs included) for the
record's plaintext.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nacl.signing
import trio

from node.assembly import Node
from node.config.datadir import DataDir
from node.config.gossip import GossipConfig
from node.config.keyfiles import KeyKind, create_signing_key
from node.config.storage import StorageConfig
from node.daemon import serve_node
from node.records.errors import RecordError
from protocol.membership.certificate import issue
from protocol.text import counted
from storage.codec.crypt import open_sealed_key
from storage.codec.manifest import RecordMetadata

MARKER = b"MEDVAULT-NETWORK-DEMO-PLAINTEXT"
SITES = ("hospital-A", "hospital-A", "hospital-A", "hospital-B", "hospital-B", "hospital-C",
         "hospital-C")  # fmt: skip


@dataclass
class NetworkDemoReport:
    nodes: int
    sites: dict[str, list[str]]
    k: int
    n: int
    record_id: str = ""
    size: int = 0
    put_seconds: float = 0.0
    placement: dict[int, str] = field(default_factory=dict)  # index -> "node (site)"
    stopped_site: str = ""
    stopped: list[str] = field(default_factory=list)
    read_on: str = ""
    intact: bool = False
    read_seconds: float = 0.0
    stranger_refused: bool = False
    repaired: dict[int, str] = field(default_factory=dict)
    repair_trouble: str = ""  # the repair's note and each target's failure, if any
    hosts_after: int = 0
    files_scanned: int = 0
    plaintext_found: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.intact
            and self.stranger_refused
            and not self.plaintext_found
            and self.hosts_after == self.n
        )

    def lines(self) -> list[str]:
        lost = [i for i, where in self.placement.items() if self.stopped_site in where]
        out = [
            f"medvault demo: {counted(self.nodes, 'node')} on 127.0.0.1 for"
            f" {counted(len(self.sites), 'hospital')},"
            f" records coded k={self.k} of n={self.n}",
        ]
        for site, names in self.sites.items():
            out.append(f"  {site}: {', '.join(names)}")
        out += [
            f"stored   record {self.record_id[:16]}... ({_mib(self.size)}) from node0 in"
            f" {self.put_seconds:.2f}s, granted to a patient key; shards placed by site:",
            *(f"           index {i} -> {where}" for i, where in sorted(self.placement.items())),
            f"stopped  all of {self.stopped_site} ({', '.join(self.stopped)}): it held shard"
            f" indices {lost}, at most n-k={self.n - self.k} of them",
            f"read     on {self.read_on} as the patient (decrypted with the patient's key):"
            f" {'intact' if self.intact else 'NOT INTACT'} in {self.read_seconds:.2f}s",
            f"refused  a key without a grant: {'yes' if self.stranger_refused else 'NO'}",
            f"repaired {counted(len(self.repaired), 'shard index', 'shard indices')} rebuilt onto"
            " surviving nodes:"
            f" {self.hosts_after} of {self.n} distinct hosts again"
            + (f" ({self.repair_trouble})" if self.repair_trouble else ""),
            f"scanned  {counted(self.files_scanned, 'file')} the nodes wrote (stores, ledgers,"
            f" logs): plaintext found in {self.plaintext_found or 'none'}",
            "OK" if self.ok else "FAILED",
        ]
        return out


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


async def run_network_demo(root: Path, size: int, k: int = 3, n: int = 5) -> NetworkDemoReport:
    """Run the whole demo in `root` (which it fills with the nodes' data directories)."""
    storage = StorageConfig(k=k, n=n, happy=n - 1, segment_size=256 * 1024, call_timeout=10.0)
    gossip = GossipConfig(interval=0.5)
    names = [f"node{i}" for i in range(len(SITES))]
    sites: dict[str, list[str]] = {}
    for name, site in zip(names, SITES, strict=True):
        sites.setdefault(site, []).append(name)
    report = NetworkDemoReport(len(SITES), sites, k, n)
    async with trio.open_nursery() as nursery:
        nodes, scopes = await _start_nodes(nursery, root, storage, gossip)
        await _exercise(report, nodes, scopes, names, size)
        nursery.cancel_scope.cancel()
    report.files_scanned, report.plaintext_found = _scan(root)
    return report


async def _start_nodes(
    nursery: trio.Nursery, root: Path, storage: StorageConfig, gossip: GossipConfig
) -> tuple[list[Node], list[trio.CancelScope]]:
    nodes: list[Node] = []
    scopes: list[trio.CancelScope] = []
    # The network's authority admits every node at its site (certificates are shown
    # right after each handshake; sites come from them).
    authority = create_signing_key(root / "authority.key", KeyKind.AUTHORITY, os.urandom(32))
    for index, site in enumerate(SITES):
        data_dir = DataDir(root / f"node{index}")
        bootstrap = [f"{nodes[0].public_key.hex()}@{nodes[0].contact.address}"] if nodes else []
        network_key = os.urandom(32) if not nodes else DataDir(root / "node0").network_key()
        identity = data_dir.initialize(
            network_key=network_key,
            listen="127.0.0.1:0",
            bootstrap=bootstrap,
            random_bytes=os.urandom,
            storage=dataclasses.replace(storage, site=site),
            gossip=gossip,
            authorities=(bytes(authority.verify_key),),
        )
        now = int(time.time() * 1000)
        data_dir.install_certificate(
            issue(authority, bytes(identity.verify_key), site, issued_at=now)
        )
        scope = trio.CancelScope()
        nodes.append(await nursery.start(_run_node, data_dir, scope))
        scopes.append(scope)
    return nodes, scopes


async def _run_node(
    data_dir: DataDir, scope: trio.CancelScope, *, task_status: trio.TaskStatus[Node]
) -> None:
    with scope:
        await serve_node(data_dir, task_status=task_status)


async def _exercise(
    report: NetworkDemoReport,
    nodes: list[Node],
    scopes: list[trio.CancelScope],
    names: list[str],
    size: int,
) -> None:
    patient = nacl.signing.SigningKey(os.urandom(32))
    stranger = nacl.signing.SigningKey(os.urandom(32))
    data = _record_bytes(size)
    index_of = {node.public_key: i for i, node in enumerate(nodes)}

    started = time.perf_counter()
    result = await nodes[0].records.put(
        _segments(data, nodes[0].records.config.segment_size),
        metadata=RecordMetadata(content_type="text/plain", filename="discharge-summary.txt"),
        grantees=[bytes(patient.verify_key)],
    )
    report.put_seconds = time.perf_counter() - started
    report.record_id, report.size = result.record_id.hex(), len(data)
    report.placement = {
        i: f"{names[index_of[holder]]} ({SITES[index_of[holder]]})"
        for i, holder in result.holders.items()
    }

    report.stopped_site = "hospital-B"
    for i, site in enumerate(SITES):
        if site == report.stopped_site:
            scopes[i].cancel()
            report.stopped.append(names[i])

    reader_index = SITES.index("hospital-C")
    reader = nodes[reader_index]
    report.read_on = f"{names[reader_index]} (hospital-C)"
    while reader.ledger.state().grant_for(result.record_id, bytes(patient.verify_key), 0) is None:
        await reader.ledger.changed()  # the grant arrives by gossip
    started = time.perf_counter()
    permits = [reader.records.permit_as(result.record_id, patient)]
    handle = await reader.records.open(result.record_id, bytes(patient.verify_key), permits)
    record_key = open_sealed_key(handle.grant.sealed_key, patient)
    chunks = [chunk async for chunk in reader.records.plaintext(handle, record_key)]
    report.read_seconds = time.perf_counter() - started
    report.intact = b"".join(chunks) == data

    try:
        stranger_permits = [reader.records.permit_as(result.record_id, stranger)]
        await reader.records.open(result.record_id, bytes(stranger.verify_key), stranger_permits)
    except RecordError:
        report.stranger_refused = True

    # The owner's node repairs: holders serve blocks only to the owner, a current
    # grantee or a proven holder of the record, and the reader's node may be none.
    # As minutes after a put in a real network, every live ledger knows the record: a
    # node whose ledger lags refuses repair uploads until gossip brought it.
    for i, node in enumerate(nodes):
        while (
            names[i] not in report.stopped and result.record_id not in node.ledger.state().records
        ):
            await node.ledger.changed()
    repairer = nodes[0].repairer
    repair = await repairer.repair(result.record_id)
    report.repaired = {i: names[index_of[node]] for i, node in repair.placed.items()}
    failures = [f"{names[index_of[node]]}: {why}" for node, why in repair.failed.items()]
    report.repair_trouble = "; ".join([repair.note, *failures] if repair.note else failures)
    report.hosts_after = (await repairer.check(result.record_id)).distinct_hosts


def _record_bytes(size: int) -> bytes:
    """A synthetic record: random bytes with the marker repeated through it."""
    body = bytearray(os.urandom(size))
    for offset in range(0, max(0, size - len(MARKER)), 64 * 1024):
        body[offset : offset + len(MARKER)] = MARKER
    return bytes(body)


async def _segments(data: bytes, size: int) -> AsyncIterator[tuple[bytes, bool]]:
    count = max(1, -(-len(data) // size))
    for i in range(count):
        yield data[i * size : (i + 1) * size], i == count - 1


def _scan(root: Path) -> tuple[int, list[str]]:
    """Every file under `root`: how many, and which contain the marker."""
    scanned, found = 0, []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_socket():
            scanned += 1
            if MARKER in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return scanned, found
