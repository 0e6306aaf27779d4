"""Event-loop stalls while a peer sends maximum-size messages of capped lists.

    python -m benchmarks.stall [--messages 20] [--json]

A node (connection manager on 127.0.0.1) runs a ticker task that sleeps 1 ms
at a time and records its longest gap; a peer in another process sends it
`--messages` envelopes of just under 4 MiB, each a list of about 49,000
ledger feed heads (below MAX_HEADS, so they pass the list cap and cost full
decoding), one after another, waiting for each answer. Run twice: with
large envelopes decoded on the trio thread (as before), and in a worker
thread (`node.net.peer.DECODE_IN_WORKER_BYTES`). The longest gap is what
every other peer of the node waits at worst meanwhile.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from benchmarks.harness import emit_json, parser, print_table
from node.config.network import Limits
from node.net import peer
from node.net.channel import open_client_channel
from node.net.connections import ConnectionManager
from node.net.dispatch import base_dispatcher
from node.net.transport import TcpTransport
from protocol.ledger.messages import FeedHead, LedgerHeadsReply
from protocol.net.messages import Envelope, Kind, decode_envelope, encode_envelope
from protocol.net.wire import DEFAULT_MAX_MESSAGE

NETWORK_KEY = b"benchmark network key, not real"[:32].ljust(32, b".")
SERVER_SEED = b"S" * 32
CLIENT_SEED = b"C" * 32
REPO = Path(__file__).resolve().parents[1]
TICK = 0.001


def big_payload() -> bytes:
    """One envelope just under the message cap: as many feed heads as fit."""
    head = FeedHead(b"a" * 32, 1, 1, b"t" * 16)
    count = 65_536
    while True:
        payload = encode_envelope(Envelope(Kind.REQUEST, 1, LedgerHeadsReply((head,) * count)))
        if len(payload) <= DEFAULT_MAX_MESSAGE - 1024:
            return payload
        count = count * (DEFAULT_MAX_MESSAGE - 1024) // len(payload) - 1


async def send(port: int, messages: int) -> None:
    """The peer process: `messages` large envelopes, each after the previous answer."""
    payload = big_payload()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    channel = await open_client_channel(
        stream,
        network_key=NETWORK_KEY,
        identity=nacl.signing.SigningKey(CLIENT_SEED),
        server_public=bytes(nacl.signing.SigningKey(SERVER_SEED).verify_key),
        ephemeral_seed=os.urandom(32),
    )
    for _ in range(messages):
        await channel.send(payload)
        await channel.receive()  # the answer (an error: this is not a request)
    await channel.aclose()


async def measure(messages: int, inline: bool) -> dict[str, float]:
    """The ticker's longest gap (s) while the peer process sends; its decode times."""
    if inline:
        peer.DECODE_IN_WORKER_BYTES = 2**62
    manager = ConnectionManager(
        identity=nacl.signing.SigningKey(SERVER_SEED),
        network_key=NETWORK_KEY,
        transport=TcpTransport("127.0.0.1:0"),
        handler=base_dispatcher(),
        limits=Limits(),
    )
    gaps: list[float] = []
    async with trio.open_nursery() as nursery:
        address = await nursery.start(manager.serve)
        port = address.rsplit(":", 1)[1]

        async def ticker() -> None:
            while True:
                before = time.perf_counter()
                await trio.sleep(TICK)
                gaps.append(time.perf_counter() - before - TICK)

        nursery.start_soon(ticker)
        started = time.perf_counter()
        await trio.run_process(
            [sys.executable, "-m", "benchmarks.stall", "--send", port, "--messages", str(messages)],
            cwd=REPO,
        )
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return {
        "max_gap_s": max(gaps),
        "p99_gap_s": sorted(gaps)[int(len(gaps) * 0.99)],
        "seconds_per_message": elapsed / messages,
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--send", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.send:
        trio.run(send, int(args.send), args.messages)
        return
    payload = big_payload()
    start = time.perf_counter()
    decode_envelope(payload)
    decode_s = time.perf_counter() - start
    figures: dict[str, Any] = {"message_bytes": len(payload), "decode_s": round(decode_s, 4)}
    original = peer.DECODE_IN_WORKER_BYTES
    for mode, inline in (("inline", True), ("worker", False)):
        peer.DECODE_IN_WORKER_BYTES = original
        result = trio.run(measure, args.messages, inline)
        for key, value in result.items():
            figures[f"{mode}_{key}"] = round(value, 4)
    figures["messages"] = args.messages
    print(
        f"{args.messages} envelopes of {len(payload) / 2**20:.2f} MiB (feed heads) from a peer"
        f" process; one decode takes {decode_s * 1000:.0f} ms."
    )
    print_table(
        ["large envelopes decoded", "longest loop stall, ms", "p99 stall, ms", "s per message"],
        [
            [
                mode,
                figures[f"{mode}_max_gap_s"] * 1000,
                figures[f"{mode}_p99_gap_s"] * 1000,
                figures[f"{mode}_seconds_per_message"],
            ]
            for mode in ("inline", "worker")
        ],
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
