"""The daemon's control socket: where it lives and how to reach it.

`control.sock` sits in the data directory (0700) and is itself 0600, so only
the node's operator account can talk to the daemon. A Unix socket address is
limited to about 107 bytes; a longer path is reached through the directory's
/proc/self/fd entry instead (Linux), so deep data directories still work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CONTROL_SOCKET = "control.sock"
_SUN_PATH_LIMIT = 100


def control_path(data_dir: Path) -> Path:
    return data_dir / CONTROL_SOCKET


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An AF_UNIX address naming `path`, valid inside the `with` block."""
    if len(os.fsencode(path)) < _SUN_PATH_LIMIT:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
