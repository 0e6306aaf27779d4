"""A send cut off mid-message (cancelled: a put interrupted, a node stopping) must not leave a
stream whose next frame the peer would reject: the channel says it is broken, the connection
closes, and the next call to that peer goes over a fresh connection."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.net.channel import SecureChannel, open_client_channel, open_server_channel
from node.sim.memory import MemoryNetwork
from protocol.errors import RemoteProtocolError
from protocol.net.messages import Ping, Pong
from tests.node.nodes import address_of, start_node
from tests.protocol.keys import NETWORK, seed, signing_key


async def channel_pair() -> tuple[SecureChannel, SecureChannel]:
    """A client and a server channel over a lockstep stream: a send waits for the reader."""
    client_stream, server_stream = trio.testing.lockstep_stream_pair()
    server_key = signing_key("cut server")
    channels: dict[str, SecureChannel] = {}

    async def server() -> None:
        channels["server"] = await open_server_channel(
            server_stream, network_key=NETWORK, identity=server_key, ephemeral_seed=seed("s")
        )

    async def client() -> None:
        channels["client"] = await open_client_channel(
            client_stream,
            network_key=NETWORK,
            identity=signing_key("cut client"),
            server_public=bytes(server_key.verify_key),
            ephemeral_seed=seed("c"),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        nursery.start_soon(client)
    return channels["client"], channels["server"]


async def test_a_send_cut_off_breaks_the_channel(autojump_clock: trio.abc.Clock) -> None:
    client, _server = await channel_pair()  # the server never reads again
    with trio.move_on_after(1):
        await client.send(b"x" * 200_000)  # blocks on the lockstep stream, then is cancelled
    assert client.broken
    with pytest.raises(RemoteProtocolError, match="cut off"):
        await client.send(b"next")


async def test_a_call_cut_off_closes_the_connection_and_the_next_redials(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        first = await b.connect(address_of(a))
        await trio.testing.wait_all_tasks_blocked()

        async def never_ends(*args: object) -> None:  # the stream stalls mid-message
            await trio.sleep_forever()

        first.channel.stream.send_all = never_ends  # type: ignore[method-assign,assignment]
        with trio.move_on_after(5):
            await first.call(Ping(1))
        assert first.channel.broken and not first.is_open
        second = await b.connect(address_of(a))
        assert second is not first
        assert await second.request(Ping(2), Pong) == Pong(2)
        nursery.cancel_scope.cancel()
