"""A TCP channel receives straight into the box-stream reader's buffer (socket recv_into):
whole messages of every size arrive intact, and a peer that stops mid-frame, resets the
connection or sends a forged frame ends only its own channel, with a clear reason."""

from __future__ import annotations

import os
import socket
import struct

import pytest
import trio

from node.net.channel import (
    SEAL_CHUNK_BODIES,
    ConnectionLost,
    SecureChannel,
    open_client_channel,
    open_server_channel,
)
from protocol.errors import RemoteProtocolError
from protocol.net.boxstream import HEADER_SIZE, KEEP_BUFFER, MAX_BODY
from tests.protocol.keys import NETWORK, seed, signing_key


async def tcp_pair() -> tuple[SecureChannel, SecureChannel, trio.SocketStream]:
    """Client and server channels over TCP on 127.0.0.1; also the client's raw stream."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    server_key = signing_key("recv server")
    channels: dict[str, SecureChannel] = {}
    raw: list[trio.SocketStream] = []

    async def server() -> None:
        stream = await listeners[0].accept()
        channels["server"] = await open_server_channel(
            stream, network_key=NETWORK, identity=server_key, ephemeral_seed=seed("rs")
        )

    async def client() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        raw.append(stream)
        channels["client"] = await open_client_channel(
            stream,
            network_key=NETWORK,
            identity=signing_key("recv client"),
            server_public=bytes(server_key.verify_key),
            ephemeral_seed=seed("rc"),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        nursery.start_soon(client)
    await listeners[0].aclose()
    return channels["client"], channels["server"], raw[0]


async def test_messages_of_every_size_arrive_whole_over_tcp() -> None:
    client, server, _ = await tcp_pair()
    assert server._socket is not None  # the receive-into path is the one tested
    sizes = [1, 100, 65_535, 65_536, 262_144, 300_001, 1_048_576, 3_000_000, 7]
    sent = [os.urandom(size) for size in sizes]

    async def send_all() -> None:
        for payload in sent:
            await client.send(payload)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all)
        for payload in sent:
            got = await server.receive()
            assert got is not None and bytes(got) == payload
    # A connection between messages keeps a small buffer, whatever came before.
    assert len(server._reader._buffer) <= KEEP_BUFFER
    await client.aclose()
    assert await server.receive() is None  # the goodbye
    await server.aclose()


async def test_a_peer_stopping_mid_frame_is_a_lost_connection() -> None:
    client, server, raw = await tcp_pair()
    sealed = bytes(client._writer.seal(struct.pack(">I", 10_000), os.urandom(10_000)))
    await raw.send_all(sealed[: len(sealed) // 2])
    await raw.aclose()
    with pytest.raises(ConnectionLost, match="without a goodbye"):
        await server.receive()
    await server.aclose()


async def test_a_reset_connection_is_a_lost_connection() -> None:
    _client, server, raw = await tcp_pair()
    await raw.send_all(b"\x00" * 10)  # part of a header: the reader waits for more
    raw.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await raw.aclose()  # RST, not FIN
    with pytest.raises(ConnectionLost, match="receive failed: Connection reset"):
        await server.receive()
    await server.aclose()


async def test_a_forged_frame_over_tcp_fails_authentication() -> None:
    _client, server, raw = await tcp_pair()
    await raw.send_all(os.urandom(200))
    with pytest.raises(RemoteProtocolError, match="failed authentication"):
        await server.receive()
    await raw.aclose()
    await server.aclose()


async def test_a_large_message_is_sealed_a_chunk_at_a_time() -> None:
    # A writer keeps one channel per holder with multi-MiB batches in flight: the
    # sealed copy each channel keeps is one chunk of bodies, not the whole message.
    client, server, _ = await tcp_pair()
    payload = os.urandom(3 * 1024 * 1024 + 17)  # under the 4 MiB message cap

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send, payload)
        got = await server.receive()
    assert got is not None and bytes(got) == payload
    chunk = SEAL_CHUNK_BODIES * (MAX_BODY + HEADER_SIZE)
    assert 0 < len(client._sealed) <= chunk
    # The nonces stayed in step across the chunks: the next message opens too.
    await client.send(b"after")
    assert bytes(await server.receive() or b"") == b"after"
    await client.aclose()
    await server.aclose()
