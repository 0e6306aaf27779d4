"""`tahoe` with every listening socket on 127.0.0.1: how tahoe_grid runs a node.

    python -m benchmarks.tahoe_node run NODEDIR   # as `tahoe run NODEDIR`

A node's own ports come from its tahoe.cfg (tub.port, web.port: loopback
endpoints that tahoe_grid writes), but Tahoe-LAFS 1.20 also opens a log tub
on a port of its choosing that it binds to every interface (allmydata's
iputil._foolscapEndpointForPortNumber binds ''). For the benchmark that
port too must stay on the loopback address, so this launcher replaces that
one function before running Tahoe's own command line; nothing else changes.
"""

from __future__ import annotations

import socket
import sys

LOOPBACK = "127.0.0.1"


def loopback_endpoint(portnum: int | None) -> tuple[int, str]:
    """(port, endpoint) on 127.0.0.1: the loopback-only stand-in for Tahoe's allocator."""
    if portnum is None:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            portnum = int(probe.getsockname()[1])
    return portnum, f"tcp:{portnum}:interface={LOOPBACK}"


def main(argv: list[str]) -> int:
    # Tahoe is an optional benchmark dependency (the bench extra): imported here only.
    from allmydata.scripts import runner  # noqa: PLC0415
    from allmydata.util import iputil  # noqa: PLC0415

    iputil._foolscapEndpointForPortNumber = loopback_endpoint
    return int(runner.run(argv=["tahoe", *argv]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
