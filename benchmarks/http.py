"""HTTP against the control socket: the same puts and gets through the JSON API and the CLI's path.

    python -m benchmarks.http [--size 64MiB] [--rounds 3] [--memory-size 256MiB]
                              [--chunk-size 1MiB] [--nodes 5] [-k 3] [-n 5]
                              [--segment-size 1048576] [--dir DIR] [--seed 1] [--json]

Starts `--nodes` real daemons on 127.0.0.1 as benchmarks.cluster does, node0
and node1 also serving HTTP. Each round stores a fresh seeded `--size` record
from node0 granted to node1 and reads it back on node1, once through HTTP
(POST /v1/records with httpx streaming a generator of `--chunk-size` chunks,
GET /v1/records/{id} streamed with iter_bytes) and once through the control
socket (the file handed to the daemon as `medvault put` does, read back as
`medvault get` does); the two alternate which goes first. MB/s (10^6 bytes
per second) are medians over `--rounds`; the ratios are HTTP over control
(issue 15's target: at least 0.8), also as the median of each round's own
ratio, steadier when other work loads the machine. The CPU seconds the writer
(node0) spends on each put and the reader (node1) on each get are read from
/proc around the request. Every read is hashed and checked.

Memory, before the rounds while the daemons are fresh: a `--memory-size`
record goes up through HTTP to node0 and is read through HTTP on node1,
and another goes up through the control socket to node2 and is read on
node3, each body generated and hashed as it streams. For each operation the
daemon's VmHWM is reset right before it (/proc/PID/clear_refs) and read right
after: its peak, and how far that rose above its resident memory at the
start. `--memory-size 0` skips this.
"""

from __future__ import annotations

import hashlib
import operator
import re
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.cluster import get as control_get
from benchmarks.cluster import network_settings, record_file, wait_known
from benchmarks.cluster import put as control_put
from benchmarks.harness import MB, MIB, emit_json, parser, print_table, seeded_bytes
from node.sim import localhttp
from node.sim.localhttp import Hashed, HttpEndpoint, seeded_chunks, serve_http
from node.sim.localnet import Network
from node.sim.procstat import PeakWatch, cpu_seconds

TARGET_RATIO = 0.8
HTTP_TIMEOUT = httpx.Timeout(600.0)
_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": MIB, "gib": 1024 * MIB}


def parse_size(text: str) -> int:
    """Bytes from 1048576, 512KiB, 64MiB or 1GiB (fractions allowed: 0.5MiB)."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if found is None or found.group(2).lower() not in _UNITS:
        raise ValueError(f"size {text!r}: expected a number with B, KiB, MiB or GiB")
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


class Bench:
    """The network and both ways into it; every operation checked."""

    def __init__(self, net: Network, writer: HttpEndpoint, reader: HttpEndpoint) -> None:
        self.net = net
        self.writer = writer
        self.reader = reader
        self.client = httpx.Client(timeout=HTTP_TIMEOUT)

    def pid(self, index: int) -> int:
        proc = self.net.nodes[index].proc
        assert proc is not None
        return proc.pid

    def http_put(self, data: bytes, chunk: int) -> tuple[str, float]:
        view = memoryview(data)
        chunks = (bytes(view[i : i + chunk]) for i in range(0, len(data), chunk))
        return localhttp.put(self.client, self.writer, chunks, len(data), self.net.keys[1])

    def http_get(self, record_id: str, expected: str) -> float:
        digest, _, seconds = localhttp.get(self.client, self.reader, record_id)
        if digest != expected:
            raise SystemExit(f"record {record_id} read back differently through HTTP")
        return seconds

    def control_get(self, record_id: str, expected: str, reader: int = 1) -> float:
        digest, seconds = control_get(self.net, reader, record_id)
        if digest != expected:
            raise SystemExit(f"record {record_id} read back differently through the control socket")
        return seconds

    def control(self, source: Path, expected: str, writer: int = 0, reader: int = 1) -> None:
        record_id, _ = control_put(self.net, source, self.net.keys[reader], writer)
        wait_known(self.net, reader, record_id)
        self.control_get(record_id, expected, reader)

    def one(
        self, path: str, data: bytes, chunk: int
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """Put on node0 and get on node1 through `path`: (seconds, daemon CPU s) of each."""
        expected = hashlib.sha256(data).hexdigest()
        writer, reader = self.pid(0), self.pid(1)
        if path == "http":
            started = cpu_seconds(writer)
            record_id, put_s = self.http_put(data, chunk)
            put_cpu = cpu_seconds(writer) - started
        else:
            source = record_file(self.net, "record.bin", data)
            started = cpu_seconds(writer)
            record_id, put_s = control_put(self.net, source, self.net.keys[1])
            put_cpu = cpu_seconds(writer) - started
            source.unlink()
        wait_known(self.net, 1, record_id)
        started = cpu_seconds(reader)
        if path == "http":
            get_s = self.http_get(record_id, expected)
        else:
            get_s = self.control_get(record_id, expected)
        return (put_s, put_cpu), (get_s, cpu_seconds(reader) - started)


def warm_up(bench: Bench, args: Any) -> None:
    """The first put of each writer pays the lookups and imports: done untimed."""
    data = seeded_bytes(args.segment_size, args.seed)
    expected = hashlib.sha256(data).hexdigest()
    record_id, _ = bench.http_put(data, args.chunk_size)
    wait_known(bench.net, 1, record_id)
    bench.http_get(record_id, expected)
    source = record_file(bench.net, "warm.bin", data)
    for writer, reader in ((0, 1), (2, 3)):
        bench.control(source, expected, writer, reader)
    source.unlink()


def memory(bench: Bench, args: Any) -> list[dict[str, Any]]:
    """Peak memory of the daemon doing each operation, HTTP (node0, node1) and control (2, 3)."""
    size, rows = args.memory_size, []

    def watched(path: str, op: str, index: int, action: Callable[[], object]) -> None:
        with PeakWatch(bench.pid(index)) as watch:
            action()
        rows.append(
            {
                "path": path,
                "op": op,
                "node": index,
                "rss_before_mib": round(watch.before, 1),
                "peak_mib": round(watch.peak, 1),
                "growth_mib": round(watch.growth, 1),
            }
        )

    body = Hashed(seeded_chunks(size, args.seed + 1000, args.chunk_size))
    record_id = ""

    def http_up() -> None:
        nonlocal record_id
        record_id, _ = localhttp.put(bench.client, bench.writer, body, size, bench.net.keys[1])

    watched("http", "put", 0, http_up)
    wait_known(bench.net, 1, record_id)
    watched("http", "get", 1, lambda: bench.http_get(record_id, body.hexdigest()))

    source = bench.net.root / "memory.bin"
    written = Hashed(seeded_chunks(size, args.seed + 2000, MIB))
    with open(source, "wb") as handle:
        for chunk in written:
            handle.write(chunk)
    ids: list[str] = []
    watched(
        "control",
        "put",
        2,
        lambda: ids.append(control_put(bench.net, source, bench.net.keys[3], 2)[0]),
    )
    source.unlink()
    wait_known(bench.net, 3, ids[0])

    def control_down() -> None:
        if control_get(bench.net, 3, ids[0])[0] != written.hexdigest():
            raise SystemExit(f"record {ids[0]} read back differently through the control socket")

    watched("control", "get", 3, control_down)
    return rows


def rounds(bench: Bench, args: Any) -> list[dict[str, Any]]:
    """Alternating HTTP and control puts and gets of fresh records; one row per operation."""
    samples = []
    for number in range(args.rounds):
        order = ("http", "control") if number % 2 == 0 else ("control", "http")
        for offset, path in enumerate(order):
            data = seeded_bytes(args.size, args.seed + 10 + 2 * number + offset)
            put, get = bench.one(path, data, args.chunk_size)
            for op, (seconds, cpu) in (("put", put), ("get", get)):
                samples.append(
                    {
                        "round": number,
                        "path": path,
                        "op": op,
                        "seconds": round(seconds, 4),
                        "mbps": round(args.size / seconds / MB, 1),
                        "daemon_cpu_s": round(cpu, 2),
                    }
                )
    return samples


def medians(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Medians per path and operation; the ratios HTTP/control of the medians and, steadier
    on a shared machine, the median of each round's own ratio (both ran back to back)."""
    figures = {}

    def of(path: str, op: str, key: str) -> list[float]:
        return [s[key] for s in samples if s["path"] == path and s["op"] == op]

    for path in ("http", "control"):
        for op in ("put", "get"):
            figures[f"{path}_{op}_mbps"] = round(statistics.median(of(path, op, "mbps")), 1)
            cpu = statistics.median(of(path, op, "daemon_cpu_s"))
            figures[f"{path}_{op}_daemon_cpu_s"] = round(cpu, 2)
    for op in ("put", "get"):
        figures[f"{op}_ratio"] = round(
            figures[f"http_{op}_mbps"] / figures[f"control_{op}_mbps"], 3
        )
        paired = map(operator.truediv, of("http", op, "mbps"), of("control", op, "mbps"))
        figures[f"{op}_ratio_paired"] = round(statistics.median(paired), 3)
    return figures


def run(args: Any, root: Path) -> dict[str, Any]:
    net = Network(root / "net", args.nodes, network_settings(args))
    writer = serve_http(net, 0, "write", "bench-writer")
    reader = serve_http(net, 1, "read", "bench-reader")
    try:
        net.start_all()
        for index in (0, 1):
            net.nodes[index].wait_for("http listening")
        bench = Bench(net, writer, reader)
        with bench.client:
            warm_up(bench, args)
            memory_rows = memory(bench, args) if args.memory_size else []
            samples = rounds(bench, args)
    finally:
        net.stop_all()
    figures: dict[str, Any] = {
        "nodes": args.nodes,
        "k": args.k,
        "n": args.n,
        "size": args.size,
        "rounds": args.rounds,
        "chunk_size": args.chunk_size,
        **medians(samples),
        "samples": samples,
        "memory_size": args.memory_size,
        "memory": memory_rows,
    }
    report(figures, args)
    return figures


def report(figures: dict[str, Any], args: Any) -> None:
    print(
        f"{args.nodes} daemons on 127.0.0.1, k={args.k} n={args.n},"
        f" {args.segment_size // 1024} KiB segments, {args.size / MIB:g} MiB records,"
        f" {args.rounds} rounds, HTTP bodies in {args.chunk_size // 1024} KiB chunks (medians)"
    )
    print_table(
        ["path", "put MB/s", "get MB/s", "writer CPU s", "reader CPU s"],
        [
            [
                p,
                figures[f"{p}_put_mbps"],
                figures[f"{p}_get_mbps"],
                figures[f"{p}_put_daemon_cpu_s"],
                figures[f"{p}_get_daemon_cpu_s"],
            ]
            for p in ("http", "control")
        ],
    )
    print(
        f"HTTP/control: put {figures['put_ratio']:.2f}x, get {figures['get_ratio']:.2f}x"
        f" (medians of each round's ratio: put {figures['put_ratio_paired']:.2f}x,"
        f" get {figures['get_ratio_paired']:.2f}x; target >= {TARGET_RATIO}x)"
    )
    if figures["memory"]:
        print()
        print(f"daemon memory during one {args.memory_size / MIB:g} MiB record (MiB)")
        print_table(
            ["path", "op", "node", "RSS before", "peak", "growth"],
            [
                [
                    r["path"],
                    r["op"],
                    f"node{r['node']}",
                    r["rss_before_mib"],
                    r["peak_mib"],
                    r["growth_mib"],
                ]
                for r in figures["memory"]
            ],
        )


def main() -> None:
    p = parser(__doc__.splitlines()[0] if __doc__ else "http benchmark")
    p.add_argument("--size", type=parse_size, default=64 * MIB, help="record size (64MiB)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--memory-size", type=parse_size, default=256 * MIB, help="0: no memory run")
    p.add_argument("--chunk-size", type=parse_size, default=MIB, help="HTTP upload chunks")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("-k", type=int, default=3)
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--segment-size", type=int, default=MIB)
    p.add_argument("--dir", type=Path, default=None, help="where the nodes live (default: temp)")
    args = p.parse_args()
    if args.nodes < 4:
        raise SystemExit("--nodes must be at least 4 (two writers and two readers)")
    if args.rounds < 1 or args.size < 1 or args.chunk_size < 1:
        raise SystemExit("--rounds, --size and --chunk-size must be positive")
    with tempfile.TemporaryDirectory(prefix="medvault-http-") as tmp:
        figures = run(args, args.dir or Path(tmp))
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
