"""node.memory: freed buffers that glibc would keep go back to the system."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node.memory import _libc

# Freeing one mmapped 1 MiB buffer raises glibc's mmap threshold, so the next
# 1 MiB buffers come from the heap (as a put's segments do); a small object
# allocated after them keeps the heap's top in use, so freeing them returns
# nothing by itself.
PROBE = """
import json
from pathlib import Path
from node.memory import release_free_memory

def rss():
    lines = Path("/proc/self/status").read_text().splitlines()
    line = next(l for l in lines if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

first = b"x" * (1 << 20)
del first
buffers = [b"x" * (1 << 20) for _ in range(64)]
pin = bytearray(100_000)
del buffers
freed = rss()
released = release_free_memory()
print(json.dumps({"freed": freed, "trimmed": rss(), "released": released}))
"""


@pytest.mark.skipif(_libc() is None, reason="malloc_trim is glibc's; elsewhere a no-op")
def test_release_gives_freed_heap_buffers_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    figures = json.loads(done.stdout)
    assert figures["released"] is True
    assert figures["freed"] - figures["trimmed"] > 32  # MiB of the 64 freed
