"""Real `medvault` daemons on 127.0.0.1, set up and driven through the CLI.

For end-to-end tests and the cluster benchmark: each node is initialised by
`medvault init` in its own data directory at a fixed port (so a restarted or
replaced node keeps its address, as in production) and run as `medvault run`
with JSON logs. A thread drains each daemon's stderr as it is written (a
full pipe would block the daemon), appending every line to `log_path` and
handing parsed events to `wait_for`.
"""

from __future__ import annotations

import json
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import tomlkit

from node.control.client import call
from protocol.control.commands import Status
from protocol.control.replies import StatusReply


def medvault(
    *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


class Daemon:
    def __init__(self, data_dir: Path, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path or data_dir.with_name(data_dir.name + ".log")
        self.events: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.lies: tuple[str, ...] = ()  # set before start: the daemon lies so
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._drain: threading.Thread | None = None
        # Set before start: a program run as `PROGRAM run --data-dir ...` instead (a
        # script that runs medvault with a part changed, for a compromised member).
        self.program: list[str] = []

    def start(self) -> None:
        """Start (or restart) the daemon; events restart too, raw lines accumulate."""
        self.events = []
        self._lines = queue.Queue()
        # A daemon given lies is a compromised member (node/sim/adversary.py).
        program = ["node.sim.adversary", ",".join(self.lies), "--"] if self.lies else ["node"]
        command = [*(self.program or [sys.executable, "-m", *program]), "run"]
        command += ["--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(
            [*command, "--log-format", "json"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            bufsize=0,
        )
        assert self.proc.stderr is not None
        self._drain = threading.Thread(
            target=self._pump, args=(self.proc.stderr, self._lines), daemon=True
        )
        self._drain.start()

    def _pump(self, pipe: IO[bytes], lines: queue.Queue[str | None]) -> None:
        with open(self.log_path, "ab") as log:
            for raw in iter(pipe.readline, b""):
                log.write(raw)
                log.flush()
                lines.put(raw.decode(errors="replace"))
        lines.put(None)

    def _next(self, deadline: float) -> str | None:
        """The next log line; "" once the daemon's output ended, None at the deadline."""
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            self._lines.put(None)  # stays ended
            return ""
        self.raw_lines.append(line)
        try:
            event = json.loads(line)
        except ValueError:  # not a log record: the CLI's own error before logging began
            event = {"event": "unstructured output", "line": line.rstrip("\n")}
        self.events.append(event if isinstance(event, dict) else {"event": str(event)})
        return line

    def wait_for(
        self, name: str, timeout: float = 30, nth: int = 1, **match: Any
    ) -> dict[str, Any]:
        """The `nth` event called `name` with fields `match` (already seen or yet to come)."""

        def wanted(seen: dict[str, Any]) -> bool:
            return seen["event"] == name and all(seen.get(k) == v for k, v in match.items())

        found = [seen for seen in self.events if wanted(seen)]
        if len(found) >= nth:
            return found[nth - 1]
        deadline = time.monotonic() + timeout
        while (line := self._next(deadline)) is not None:
            if not line:
                raise AssertionError(f"daemon exited before {name!r}: {self.raw_lines[-20:]}")
            if wanted(self.events[-1]):
                found.append(self.events[-1])
                if len(found) == nth:
                    return found[-1]
        raise AssertionError(f"no {name!r} event within {timeout}s: {self.raw_lines[-20:]}")

    def drain(self) -> None:
        """Take in every line logged so far (without waiting for more)."""
        while self._next(time.monotonic()):
            pass

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._finish()
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a machine loses power."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._finish()

    def _finish(self) -> None:
        if self._drain is not None:
            self._drain.join(timeout=10)
            self._drain = None
        while self._next(time.monotonic()):
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
_handed_out: set[int] = set()
_pick = random.Random()


def _ephemeral_start() -> int:
    """Where the kernel starts picking ports for outgoing connections (32768 by default)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now: a restarted node keeps its address, as in production.

    Picked below the kernel's ephemeral range, so no outgoing connection (every daemon
    makes many) can be given one between this pick and the daemon's bind, and never
    handed out twice by one process, so a stopped daemon's port is not reused by the
    next test while its connections linger.
    """
    top = _ephemeral_start()
    if top - LOWEST_PORT < 1000:  # a machine with an unusual range: let the kernel pick
        return _kernel_ports(count)
    ports: list[int] = []
    while len(ports) < count:
        port = _pick.randrange(LOWEST_PORT, top)
        if port in _handed_out or not _bindable(port):
            continue
        _handed_out.add(port)
        ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def configure(config: Path, settings: dict[str, dict[str, Any]]) -> None:
    """Set values in the given [sections] of a config.toml, keeping its comments."""
    document = tomlkit.parse(config.read_text())
    for section, values in settings.items():
        table = document.setdefault(section, tomlkit.table())
        for key, value in values.items():
            table[key] = value
    config.write_text(tomlkit.dumps(document))


class Network:
    """`count` daemons of one certified network: node 0 makes the network (its authority
    key is `root/authority.key`), the others join and are admitted at their site
    (`sites[i]`, default site-i)."""

    def __init__(
        self,
        root: Path,
        count: int,
        settings: dict[str, dict[str, Any]],
        sites: list[str] | None = None,
    ) -> None:
        self.root = root
        self.settings = settings
        self.sites = sites or [f"site-{i}" for i in range(count)]
        self.ports = free_ports(count)
        self.nodes: list[Daemon] = []
        self.keys: list[str] = []
        self.authority_key = root / "authority.key"
        self.authority = ""
        for index in range(count):
            self.nodes.append(Daemon(root / f"node{index}"))
            self.keys.append(self._init(index))

    def _init(self, index: int) -> str:
        """Initialise node <index> (a new identity, admitted) at its port; its public key."""
        data_dir = self.nodes[index].data_dir
        listen = f"127.0.0.1:{self.ports[index]}"
        site = ["--site", self.sites[index]]
        if index == 0 and not self.authority:
            self.root.mkdir(parents=True, exist_ok=True)
            made = medvault(
                "init", "--data-dir", str(data_dir), "--listen", listen, *site,
                "--new-network", "--authority-key", str(self.authority_key), "--json",
            )  # fmt: skip
            self.authority = json.loads(made.stdout)["authorities"][0]
            shutil.copy2(data_dir / "network.key", self.root / "network.key")  # for joiners
        else:
            first = self.keys[0] if index else ""
            joining = [
                "--network-key",
                str(self.root / "network.key"),
                "--authority",
                self.authority,
                *(["--bootstrap", f"{first}@127.0.0.1:{self.ports[0]}"] if first else []),
            ]
            made = medvault("init", "--data-dir", str(data_dir), "--listen", listen, *site,
                            *joining, "--json")  # fmt: skip
            self.admit(index, json.loads(made.stdout)["public_key"])
        configure(data_dir / "config.toml", self.settings)
        return str(self.cli(index, "id")["public_key"])

    def admit(self, index: int, public_key: str) -> None:
        """The admin certifies node <index> at its site; the node installs it."""
        cert = self.root / f"node{index}.cert"
        cert.unlink(missing_ok=True)
        medvault(
            "admit", public_key, "--site", self.sites[index],
            "--authority-key", str(self.authority_key), "-o", str(cert),
        )  # fmt: skip
        medvault("certificate", "install", str(cert), "--data-dir", str(self.nodes[index].data_dir))

    def replace(self, index: int) -> None:
        """A dead node's machine replaced: same address, empty disk, new identity."""
        assert not self.nodes[index].running
        shutil.rmtree(self.nodes[index].data_dir)
        self.keys[index] = self._init(index)

    def index_of(self, public_key: str) -> int:
        return self.keys.index(public_key)

    def start(self, index: int) -> None:
        node = self.nodes[index]
        node.start()
        node.wait_for("control socket ready")

    def start_all(self) -> None:
        for index in range(len(self.nodes)):
            self.start(index)
        for node in self.nodes:
            node.wait_for("joined")

    def start_together(self, order: list[int] | None = None) -> None:
        """Start every daemon at once (in `order`), as after a site-wide power cut."""
        order = list(range(len(self.nodes))) if order is None else order
        for index in order:
            self.nodes[index].start()
        for index in order:
            self.nodes[index].wait_for("control socket ready")

    def status(self, index: int) -> StatusReply:
        """Node `index`'s status, asked over its control socket (no CLI process)."""
        return call(self.nodes[index].data_dir, Status(), StatusReply)

    def contacts(self) -> list[int]:
        """Each running node's routing-table size."""
        return [self.status(i).contacts if n.running else 0 for i, n in enumerate(self.nodes)]

    def wait_complete(self, deadline: float) -> float:
        """Seconds until every table holds all the other nodes (AssertionError at `deadline`)."""
        started = time.monotonic()
        whole = [len(self.nodes) - 1] * len(self.nodes)
        while (sizes := self.contacts()) != whole:
            if time.monotonic() - started > deadline:
                raise AssertionError(f"routing tables after {deadline}s: {sizes}")
            time.sleep(0.05)  # polling the daemons' state, not waiting for time to pass
        return time.monotonic() - started

    def run(self, index: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`medvault ARGS --data-dir node<index>`, whatever its exit code."""
        return medvault(
            *args, "--data-dir", str(self.nodes[index].data_dir), check=False, timeout=timeout
        )

    def cli(self, index: int, *args: str, timeout: float = 120) -> Any:
        """`medvault ARGS --json` on node <index>; its parsed output (it must succeed)."""
        done = self.run(index, *args, "--json", timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"medvault {' '.join(args)} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.running:
                node.stop()
