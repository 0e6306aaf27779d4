"""A network of real daemons on 127.0.0.1, set up and driven through the CLI."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.daemons import Daemon, medvault


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now: a restarted node keeps its address, as in production."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def configure(config: Path, settings: dict[str, dict[str, Any]]) -> None:
    """Set `key = value` lines in the given [sections] of a config.toml written by init."""
    section = ""
    lines = []
    for line in config.read_text().splitlines():
        header = re.match(r"^\[(\w+)\]$", line)
        if header:
            section = header[1]
        key = re.match(r"^(\w+) = ", line)
        if key and key[1] in settings.get(section, {}):
            lines.append(f"{key[1]} = {json.dumps(settings[section][key[1]])}")
        else:
            lines.append(line)
    config.write_text("\n".join(lines) + "\n")


class Network:
    def __init__(self, root: Path, count: int, settings: dict[str, dict[str, Any]]) -> None:
        self.root = root
        self.settings = settings
        self.ports = free_ports(count)
        self.nodes: list[Daemon] = []
        self.keys: list[str] = []
        for index in range(count):
            self.nodes.append(Daemon(root / f"node{index}"))
            self.keys.append(self._init(index))

    def _init(self, index: int) -> str:
        """Initialise node <index> (a new identity) at its port; returns its public key."""
        joining = (
            ["--new-network"]
            if index == 0
            else [
                "--network-key",
                str(self.root / "node0" / "network.key"),
                "--bootstrap",
                f"{self.keys[0]}@127.0.0.1:{self.ports[0]}",
            ]
        )
        data_dir = self.nodes[index].data_dir
        listen = f"127.0.0.1:{self.ports[index]}"
        medvault("init", "--data-dir", str(data_dir), "--listen", listen, *joining)
        configure(data_dir / "config.toml", self.settings)
        return str(self.cli(index, "id")["public_key"])

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
