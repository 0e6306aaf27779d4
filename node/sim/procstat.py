"""A real daemon's resident memory and CPU time, from /proc (Linux): for benchmarks and tests.

VmHWM is the peak since the process started, or since `reset_peak`, so one
operation's peak is read by resetting right before it and reading right after.
"""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1024 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (steadier than wall time on a busy box)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def resident_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB (VmRSS, VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak(pid: int) -> float:
    """Make the process's VmHWM its current RSS (Linux >= 4.0); that RSS in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return resident_mib(pid)[0]


class PeakWatch:
    """The peak resident memory of one process during a `with` block, and its growth."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0.0
        self.peak = 0.0

    def __enter__(self) -> PeakWatch:
        self.before = reset_peak(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = resident_mib(self.pid)[1]

    @property
    def growth(self) -> float:
        """MiB the peak rose above the resident memory at the start."""
        return self.peak - self.before
