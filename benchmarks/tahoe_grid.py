"""A Tahoe-LAFS grid on 127.0.0.1 for side-by-side benchmarks (the bench extra installs it).

An introducer, `servers` storage nodes and one client node (no storage, its
web API on a free loopback port), each created with Tahoe's own
`create-introducer`/`create-node` in a directory of `root` and run through
benchmarks.tahoe_node (Tahoe's command line with its log tub kept on
127.0.0.1 too). Every tub.port, tub.location and web.port is a 127.0.0.1
endpoint; no Tor, no I2P, no other address: `loopback_problems` checks each
written tahoe.cfg before a node starts. The client uploads with
shares.needed=k, shares.total=n and shares.happy=min(n, servers), so an
upload uses every server.

Readiness is polled, never slept for: the introducer's FURL file, then the
client's welcome JSON (`GET /?t=json`) until it lists `servers` connected
storage servers, within a bound, else an error with every node's log tail.
Each node runs in its own process group with a pipe for stdin (`tahoe run`
exits when its stdin closes, so the nodes go down with this process even
if it is killed); `stop` closes the pipes, then terminates, then kills.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import http.client
import importlib.util
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from node.sim.localnet import free_ports

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 180.0  # a busy 2-core machine starts seven Twisted processes
POLL = 0.1
STOP_GRACE = 15.0
CHUNK = 1024 * 1024
HTTP_TIMEOUT = 600.0  # one request: a 64 MiB upload on a loaded machine


class GridError(RuntimeError):
    """The grid could not be set up or did not answer as Tahoe-LAFS should."""


def tahoe_available() -> bool:
    """Whether tahoe-lafs (the bench extra) is importable by this interpreter."""
    return importlib.util.find_spec("allmydata") is not None


@dataclass(frozen=True)
class GridShape:
    servers: int = 5
    k: int = 3
    n: int = 5

    @property
    def happy(self) -> int:
        return min(self.n, self.servers)

    def check(self) -> None:
        if self.servers < 1:
            raise GridError("a Tahoe grid needs at least one storage server")
        if not 1 <= self.k <= self.n <= 256:
            raise GridError(f"need 1 <= k <= n <= 256, got k={self.k} n={self.n}")


def tub_options(port: int) -> list[str]:
    """Listen and advertise on 127.0.0.1:port only."""
    return [
        "--listen=tcp",
        f"--port=tcp:{port}:interface={LOOPBACK}",
        f"--location=tcp:{LOOPBACK}:{port}",
    ]


def introducer_command(directory: Path, port: int) -> list[str]:
    return ["create-introducer", *tub_options(port), str(directory)]


def storage_command(
    directory: Path, port: int, furl: str, shape: GridShape, index: int
) -> list[str]:
    return [
        "create-node",
        f"--nickname=storage{index}",
        *tub_options(port),
        "--webport=none",
        f"--introducer={furl}",
        *encoding_options(shape),
        str(directory),
    ]


def client_command(
    directory: Path, port: int, web_port: int, furl: str, shape: GridShape
) -> list[str]:
    return [
        "create-node",
        "--nickname=client",
        "--no-storage",
        *tub_options(port),
        f"--webport=tcp:{web_port}:interface={LOOPBACK}",
        f"--introducer={furl}",
        *encoding_options(shape),
        str(directory),
    ]


def encoding_options(shape: GridShape) -> list[str]:
    return [
        f"--shares-needed={shape.k}",
        f"--shares-total={shape.n}",
        f"--shares-happy={shape.happy}",
    ]


def loopback_problems(cfg_text: str) -> list[str]:
    """What in a tahoe.cfg could listen on or announce an address other than 127.0.0.1."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(cfg_text)
    problems = []
    node = cfg["node"] if cfg.has_section("node") else {}
    for key in ("tub.port", "web.port"):
        for endpoint in filter(None, node.get(key, "").split(",")):
            if f"interface={LOOPBACK}" not in endpoint.split(":") or not endpoint.startswith(
                "tcp:"
            ):
                problems.append(f"{key} = {endpoint} is not a tcp endpoint on {LOOPBACK}")
    for location in filter(None, node.get("tub.location", "").split(",")):
        if not location.startswith(f"tcp:{LOOPBACK}:"):
            problems.append(f"tub.location = {location} is not {LOOPBACK}")
    if node.get("reveal-IP-address", "true").strip().lower() != "true":
        problems.append("reveal-IP-address is off: Tahoe would look for Tor")
    for section in ("tor", "i2p"):
        if cfg.has_section(section):
            problems.append(f"[{section}] is configured")
    if cfg.has_section("connections") and any(
        value.strip() != "tcp" for value in cfg["connections"].values()
    ):
        problems.append("[connections] routes through something other than plain tcp")
    return problems


def connected_servers(welcome: dict[str, object]) -> int:
    """How many storage servers the client's welcome JSON reports connected.

    Tahoe 1.20 says "Connected to ... via ..." over Foolscap and "connected" over
    its HTTP storage protocol.
    """
    servers = welcome.get("servers")
    if not isinstance(servers, list):
        raise GridError(f"welcome JSON without a server list: {sorted(welcome)}")
    return sum(
        1
        for server in servers
        if isinstance(server, dict)
        and str(server.get("connection_status", "")).lower().startswith("connected")
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"  ({path.name}: no log)"
    return "\n".join(f"  {path.parent.name}: {line}" for line in text[-lines:])


class TahoeNode:
    """One node process: `python -m benchmarks.tahoe_node run DIR`, in its own group."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        problems = loopback_problems((self.directory / "tahoe.cfg").read_text())
        if problems:
            raise GridError(f"{self.directory.name}: " + "; ".join(problems))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open while the node runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.tahoe_node", "run", str(self.directory)],
            cwd=REPO,
            stdin=subprocess.PIPE,  # held open: `tahoe run` exits when it closes
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Close its stdin (Tahoe's own clean exit), then SIGTERM, then SIGKILL its group."""
        proc = self.proc
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                try:
                    proc.wait(timeout=STOP_GRACE)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None


def create(arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.tahoe_node", *arguments],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class TahoeGrid:
    """Introducer, storage servers and a client under `root`; use as a context manager."""

    def __init__(self, root: Path, shape: GridShape, ready_timeout: float = READY_TIMEOUT) -> None:
        shape.check()
        self.root = root
        self.shape = shape
        self.ready_timeout = ready_timeout
        self.nodes: list[TahoeNode] = []
        self.web_port = 0

    def __enter__(self) -> TahoeGrid:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(self.shape.servers + 3)
        deadline = time.monotonic() + self.ready_timeout
        intro_dir = self.root / "introducer"
        self._create([introducer_command(intro_dir, ports[0])], deadline)
        introducer = TahoeNode(intro_dir)
        self.nodes.append(introducer)
        introducer.start()
        furl = self._wait_furl(intro_dir / "private" / "introducer.furl", deadline)
        self.web_port = ports[1]
        commands = [client_command(self.root / "client", ports[2], ports[1], furl, self.shape)]
        for index in range(self.shape.servers):
            directory = self.root / f"storage{index}"
            commands.append(storage_command(directory, ports[3 + index], furl, self.shape, index))
        self._create(commands, deadline)
        for command in commands:
            node = TahoeNode(Path(command[-1]))
            self.nodes.append(node)
            node.start()
        self._wait_connected(deadline)

    def _create(self, commands: list[list[str]], deadline: float) -> None:
        """Run Tahoe's create-* commands side by side; each must succeed."""
        logs = [self.root / f"create-{Path(c[-1]).name}.log" for c in commands]
        procs = [create(command, log) for command, log in zip(commands, logs, strict=True)]
        try:
            for command, proc, log in zip(commands, procs, logs, strict=True):
                remaining = max(1.0, deadline - time.monotonic())
                if proc.wait(timeout=remaining) != 0:
                    raise GridError(f"tahoe {command[0]} failed:\n{tail(log)}")
        except subprocess.TimeoutExpired as timeout:
            raise GridError(f"tahoe create-* did not finish in {self.ready_timeout}s") from timeout
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def _wait_furl(self, path: Path, deadline: float) -> str:
        while True:
            if path.exists() and (furl := path.read_text().strip()):
                return furl
            self._check_alive(deadline, "the introducer's FURL")
            time.sleep(POLL)

    def welcome(self) -> dict[str, object]:
        status, body = self._request("GET", "/?t=json")
        if status != 200:
            raise GridError(f"welcome page answered {status}: {body[:200]!r}")
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise GridError("welcome JSON is not an object")
        return parsed

    def _wait_connected(self, deadline: float) -> None:
        seen = 0
        while True:
            try:
                seen = connected_servers(self.welcome())
            except (OSError, http.client.HTTPException, ValueError):
                seen = 0  # the web API is not up yet
            if seen >= self.shape.servers:
                return
            self._check_alive(deadline, f"{self.shape.servers} connected servers (saw {seen})")
            time.sleep(POLL)

    def _check_alive(self, deadline: float, waiting_for: str) -> None:
        dead = [node.directory.name for node in self.nodes if not node.running]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else f"not ready in {self.ready_timeout}s"
            logs = "\n".join(tail(node.log_path) for node in self.nodes)
            raise GridError(f"Tahoe grid: {why} while waiting for {waiting_for}:\n{logs}")

    def _request(self, method: str, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(LOOPBACK, self.web_port, timeout=10)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def put(self, source: Path) -> tuple[str, float]:
        """`PUT /uri` of the whole file (an immutable CHK file): its read cap and seconds."""
        size = source.stat().st_size
        connection = http.client.HTTPConnection(
            LOOPBACK, self.web_port, timeout=HTTP_TIMEOUT, blocksize=CHUNK
        )
        try:
            with open(source, "rb") as body:
                started = time.perf_counter()
                connection.request("PUT", "/uri", body=body, headers={"Content-Length": str(size)})
                response = connection.getresponse()
                cap = response.read().decode().strip()
                elapsed = time.perf_counter() - started
        finally:
            connection.close()
        if response.status not in (200, 201) or not cap.startswith("URI:CHK:"):
            raise GridError(f"PUT /uri answered {response.status}: {cap[:200]}")
        return cap, elapsed

    def get(self, cap: str) -> tuple[str, int, float]:
        """`GET /uri/<cap>` streamed: the SHA-256 and length of what came back, and seconds."""
        digest = hashlib.sha256()
        size = 0
        connection = http.client.HTTPConnection(LOOPBACK, self.web_port, timeout=HTTP_TIMEOUT)
        try:
            started = time.perf_counter()
            connection.request("GET", "/uri/" + quote(cap, safe=""))
            response = connection.getresponse()
            if response.status != 200:
                answer = response.read(200)
                raise GridError(f"GET /uri/<cap> answered {response.status}: {answer!r}")
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            elapsed = time.perf_counter() - started
        finally:
            connection.close()
        return digest.hexdigest(), size, elapsed

    def stop(self) -> None:
        """Every node down (client first, introducer last), also after an error."""
        for node in reversed(self.nodes):
            node.stop()

    def pids(self) -> list[int]:
        return [node.proc.pid for node in self.nodes if node.proc is not None and node.running]

    def check_loopback(self) -> None:
        """Refuse to go on if any node listens on an address other than 127.0.0.1."""
        stray = [addr for addr in listening_addresses(self.pids()) if addr[0] != LOOPBACK]
        if stray:
            raise GridError(f"Tahoe nodes listen beyond the loopback address: {stray}")


def listening_addresses(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that these processes hold (/proc)."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pids[0]}/net/{table}") if pids else None
        if path is None or not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(decode_proc_address(fields[1]))
    return found


def decode_proc_address(field: str) -> tuple[str, int]:
    """'0100007F:1F90' (as /proc/net/tcp prints it) -> ('127.0.0.1', 8080); IPv6 too."""
    address, port = field.split(":")
    raw = bytes.fromhex(address)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words)), int(port, 16)
    v6 = ipaddress.IPv6Address(words)
    mapped = v6.ipv4_mapped
    return (str(mapped) if mapped else str(v6)), int(port, 16)
