"""Real `medvault` processes for end-to-end tests: start, read JSON log events, stop."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def medvault(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


class Daemon:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.events: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._pending = b""

    def start(self) -> None:
        """Start (or restart) the daemon; events restart too, raw lines accumulate."""
        self._pending = b""
        self.events = []
        command = [sys.executable, "-m", "node", "run", "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(
            [*command, "--log-format", "json"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            bufsize=0,
        )

    def _read_line(self, deadline: float) -> str | None:
        """The next log line; "" at end of output, None when the deadline passes.

        Reads the raw pipe: a buffered reader may hold lines that select()
        then no longer reports.
        """
        assert self.proc is not None and self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n", 1)
        line = raw.decode() + "\n"
        self.raw_lines.append(line)
        self.events.append(json.loads(line))
        return line

    def wait_for(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """The first event called `name` (already seen or yet to come)."""
        for seen in self.events:
            if seen["event"] == name:
                return seen
        deadline = time.monotonic() + timeout
        while (line := self._read_line(deadline)) is not None:
            if not line:
                raise AssertionError(f"daemon exited before {name!r}: {self.raw_lines}")
            if self.events[-1]["event"] == name:
                return self.events[-1]
        raise AssertionError(f"no {name!r} event within {timeout}s: {self.raw_lines}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        while self._read_line(time.monotonic() + 1):
            pass
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
