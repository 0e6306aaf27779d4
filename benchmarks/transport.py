"""Secure transport on 127.0.0.1: bulk MB/s, RPC round trips/s, handshakes/s.

    python -m benchmarks.transport [--bulk-mib 16] [--repeat 5] [--json]

A server process (a real peer, on its own core) listens twice on 127.0.0.1:
a node serving ping/echo RPCs, and a channel sink that reads a whole bulk
transfer over one encrypted connection and acknowledges it. The client
process measures:
- bulk: 16 MiB sent as 1 MiB messages over one channel (handshake done
  before timing), until the sink's acknowledgement arrives;
- RPC: sequential pings, and 32 pings in flight, over one connection;
- handshakes: dial + full secret handshake + goodbye, one after another.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from benchmarks.harness import MB, MIB, emit_json, parser, print_table
from node.config.addresses import PeerAddress
from node.config.network import Limits
from node.net.channel import SecureChannel, open_client_channel, open_server_channel
from node.net.connections import ConnectionManager
from node.net.dispatch import base_dispatcher
from node.net.transport import TcpTransport
from protocol.net.messages import Ping, Pong

NETWORK_KEY = b"benchmark network key, not real"[:32].ljust(32, b".")
SERVER_SEED = b"S" * 32
CLIENT_SEED = b"C" * 32
CHUNK = MIB
REPO = Path(__file__).resolve().parents[1]


async def _sink(stream: trio.abc.Stream, host: str) -> None:
    channel = await open_server_channel(
        stream,
        network_key=NETWORK_KEY,
        identity=nacl.signing.SigningKey(SERVER_SEED),
        ephemeral_seed=os.urandom(32),
    )
    while (header := await channel.receive()) is not None:
        expected, received = int.from_bytes(header, "big"), 0
        while received < expected:
            message = await channel.receive()
            if message is None:
                return
            received += len(message)
        await channel.send(received.to_bytes(8, "big"))


async def serve() -> None:
    """The server process: prints `rpc_port sink_port`, serves until stdin closes."""
    manager = ConnectionManager(
        identity=nacl.signing.SigningKey(SERVER_SEED),
        network_key=NETWORK_KEY,
        transport=TcpTransport("127.0.0.1:0"),
        handler=base_dispatcher(),
        limits=Limits(max_handshakes=1000, max_handshakes_per_host=1000, max_connections=10_000),
    )
    async with trio.open_nursery() as nursery:
        rpc_address = await nursery.start(manager.serve)
        sink_address = await nursery.start(TcpTransport("127.0.0.1:0").serve, _sink)
        print(rpc_address.rsplit(":", 1)[1], sink_address.rsplit(":", 1)[1], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # the parent closes stdin to stop us
        nursery.cancel_scope.cancel()


async def _channel(port: int) -> SecureChannel:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await open_client_channel(
        stream,
        network_key=NETWORK_KEY,
        identity=nacl.signing.SigningKey(CLIENT_SEED),
        server_public=bytes(nacl.signing.SigningKey(SERVER_SEED).verify_key),
        ephemeral_seed=os.urandom(32),
    )


async def bulk(port: int, size: int, repeat: int) -> list[float]:
    channel = await _channel(port)
    payload = os.urandom(CHUNK)
    rates = []
    for _ in range(repeat + 1):  # the first transfer warms up and is not counted
        start = time.perf_counter()
        await channel.send(size.to_bytes(8, "big"))
        for offset in range(0, size, CHUNK):
            await channel.send(payload[: min(CHUNK, size - offset)])
        ack = await channel.receive()
        elapsed = time.perf_counter() - start
        assert ack is not None and int.from_bytes(ack, "big") == size
        rates.append(size / elapsed / MB)
    await channel.aclose()
    return rates[1:]


async def rpc(port: int, calls: int, in_flight: int) -> float:
    client = ConnectionManager(
        identity=nacl.signing.SigningKey(CLIENT_SEED),
        network_key=NETWORK_KEY,
        transport=TcpTransport("127.0.0.1:0"),
        handler=base_dispatcher(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(client.serve)
        server_key = bytes(nacl.signing.SigningKey(SERVER_SEED).verify_key)
        server = PeerAddress(server_key, "127.0.0.1", port)
        connection = await client.connect(server)
        await connection.request(Ping(0), Pong)
        per_worker = calls // in_flight

        async def worker() -> None:
            for i in range(per_worker):
                await connection.request(Ping(i), Pong)

        start = time.perf_counter()
        async with trio.open_nursery() as workers:
            for _ in range(in_flight):
                workers.start_soon(worker)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return per_worker * in_flight / elapsed


async def handshakes(port: int, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        channel = await _channel(port)
        await channel.aclose()
    return count / (time.perf_counter() - start)


async def measure(args: Any, rpc_port: int, sink_port: int) -> dict[str, Any]:
    size = int(args.bulk_mib * MIB)
    rates = await bulk(sink_port, size, args.repeat)
    sequential = [await rpc(rpc_port, args.calls, 1) for _ in range(args.repeat)]
    concurrent = [await rpc(rpc_port, args.calls, 32) for _ in range(args.repeat)]
    shakes = [await handshakes(rpc_port, args.handshakes) for _ in range(args.repeat)]
    return {
        "bulk_mib": args.bulk_mib,
        "bulk_mbps_median": round(statistics.median(rates), 1),
        "bulk_mbps_min": round(min(rates), 1),
        "rpc_sequential_per_s": round(statistics.median(sequential)),
        "rpc_32_in_flight_per_s": round(statistics.median(concurrent)),
        "handshakes_per_s": round(statistics.median(shakes), 1),
        "repeat": args.repeat,
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--bulk-mib", type=float, default=16)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--handshakes", type=int, default=200)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        trio.run(serve)
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.transport", "--serve"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        rpc_port, sink_port = (int(x) for x in server.stdout.readline().split())
        figures = trio.run(measure, args, rpc_port, sink_port)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    print(f"Secure transport on 127.0.0.1 (server in its own process), median of {args.repeat}.")
    print_table(
        ["figure", "value"],
        [
            [f"bulk {args.bulk_mib:g} MiB over one connection, MB/s", figures["bulk_mbps_median"]],
            ["RPC round trips/s, one at a time", figures["rpc_sequential_per_s"]],
            ["RPC round trips/s, 32 in flight", figures["rpc_32_in_flight_per_s"]],
            ["handshakes/s (dial + SHS + goodbye)", figures["handshakes_per_s"]],
        ],
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
