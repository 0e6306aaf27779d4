"""One contract, both transports: what an authenticated connection must do."""

from __future__ import annotations

import os

import pytest
import trio

from node.config.addresses import PeerAddress
from node.net.dispatch import base_dispatcher
from node.net.errors import CallTimeout, PeerUnreachable, RemoteError, RequestError
from node.net.rpc_port import Caller
from protocol.errors import LocalProtocolError
from protocol.net.messages import Echo, EchoReply, ErrorCode, Message, Ping, Pong
from tests.node.nodes import TransportFactory, address_of, memory_factory, start_node, tcp_factory
from tests.protocol.keys import OTHER_NETWORK, seed


@pytest.fixture(params=["memory", "tcp"])
def make_transport(request: pytest.FixtureRequest) -> TransportFactory:
    return memory_factory() if request.param == "memory" else tcp_factory()


async def test_handshake_and_ping(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        b = await start_node(nursery, make_transport(), "b")
        connection = await b.connect(address_of(a))
        assert connection.remote_public_key == a.public_key
        assert await connection.request(Ping(7), Pong) == Pong(7)
        # The answering side sees the dialer's authenticated key.
        with trio.fail_after(5):
            inbound = await a.wait_for_peer(b.public_key)
        assert not inbound.outbound
        assert await inbound.request(Ping(8), Pong) == Pong(8)
        assert (await b.connect(address_of(a))) is connection  # reused, not redialed
        nursery.cancel_scope.cancel()


async def test_concurrent_requests_on_one_connection(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        b = await start_node(nursery, make_transport(), "b")
        connection = await b.connect(address_of(a))
        answers: dict[int, bytes] = {}

        async def one(i: int) -> None:
            payload = os.urandom(1000 + i * 997)
            reply = await connection.request(Echo(payload), EchoReply)
            answers[i] = reply.data if reply.data == payload else b"MISMATCH"

        async with trio.open_nursery() as calls:
            for i in range(40):
                calls.start_soon(one, i)
        assert len(answers) == 40 and b"MISMATCH" not in answers.values()
        nursery.cancel_scope.cancel()


async def test_large_messages_and_the_cap(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        b = await start_node(nursery, make_transport(), "b")
        connection = await b.connect(address_of(a))
        big = os.urandom(3 * 1024 * 1024)
        assert (await connection.request(Echo(big), EchoReply)).data == big
        with pytest.raises(LocalProtocolError, match="exceeds"):
            await connection.call(Echo(os.urandom(5 * 1024 * 1024)))
        assert await connection.request(Ping(1), Pong) == Pong(1)
        nursery.cancel_scope.cancel()


async def test_handler_errors_are_typed_and_the_connection_survives(
    make_transport: TransportFactory,
) -> None:
    dispatcher = base_dispatcher()

    async def refuse(message: Message, peer: Caller) -> Message:
        if isinstance(message, Echo) and message.data == b"boom":
            raise ValueError("handler bug")
        raise RequestError(ErrorCode.NOT_FOUND, "no such thing")

    dispatcher.route(Pong, refuse)  # a request type this node does not normally serve
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a", dispatcher=dispatcher)
        b = await start_node(nursery, make_transport(), "b")
        connection = await b.connect(address_of(a))
        with pytest.raises(RemoteError) as caught:
            await connection.call(Pong(1))
        assert caught.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(RemoteError, match="bad_request"):
            await connection.call(EchoReply(b"not a request"))
        assert await connection.request(Ping(2), Pong) == Pong(2)
        nursery.cancel_scope.cancel()


async def test_handler_crash_answers_internal_error(make_transport: TransportFactory) -> None:
    dispatcher = base_dispatcher()

    async def crash(message: Message, peer: Caller) -> Message:
        raise ValueError("handler bug")

    dispatcher.route(Pong, crash)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a", dispatcher=dispatcher)
        b = await start_node(nursery, make_transport(), "b")
        connection = await b.connect(address_of(a))
        with pytest.raises(RemoteError) as caught:
            await connection.call(Pong(1))
        assert caught.value.code == ErrorCode.INTERNAL
        assert "handler bug" not in caught.value.detail  # internals stay inside
        assert await connection.request(Ping(3), Pong) == Pong(3)
        nursery.cancel_scope.cancel()


async def test_call_timeout_leaves_the_connection_usable(make_transport: TransportFactory) -> None:
    dispatcher = base_dispatcher()
    release = trio.Event()

    async def stall(message: Message, peer: Caller) -> Message:
        await release.wait()
        return Pong(0)

    dispatcher.route(Pong, stall)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a", dispatcher=dispatcher)
        b = await start_node(nursery, make_transport(), "b")
        connection = await b.connect(address_of(a))
        with pytest.raises(CallTimeout, match=r"within 0\.2s"):
            await connection.call(Pong(1), timeout=0.2)
        release.set()  # the late answer arrives and is dropped, not misdelivered
        assert await connection.request(Ping(4), Pong) == Pong(4)
        nursery.cancel_scope.cancel()


async def test_wrong_network_key_is_refused_and_the_node_keeps_serving(
    make_transport: TransportFactory,
) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        stranger = await start_node(nursery, make_transport(), "x", network_key=OTHER_NETWORK)
        with pytest.raises(PeerUnreachable):
            await stranger.connect(address_of(a))
        b = await start_node(nursery, make_transport(), "b")
        assert await (await b.connect(address_of(a))).request(Ping(5), Pong) == Pong(5)
        assert a.stats.handshake_failures >= 1
        nursery.cancel_scope.cancel()


async def test_unexpected_server_key_is_refused(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        b = await start_node(nursery, make_transport(), "b")
        real = address_of(a)
        impostor_key = PeerAddress(bytes(32 * [1]), real.host, real.port)
        with pytest.raises(PeerUnreachable):
            await b.connect(impostor_key)
        nursery.cancel_scope.cancel()


async def test_garbage_speaker_learns_nothing(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        transport = make_transport()
        a = await start_node(nursery, transport, "a")
        assert a.address is not None
        stream = await make_transport().connect(a.address)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(64))
        received = b""
        with trio.fail_after(5):
            try:
                while chunk := await stream.receive_some(1024):
                    received += chunk
            except trio.BrokenResourceError:
                pass  # TCP: closing with unread bytes sends a reset instead of EOF
        assert received == b""  # not one byte reveals what answered
        await stream.aclose()
        b = await start_node(nursery, make_transport(), "b")
        assert await (await b.connect(address_of(a))).request(Ping(6), Pong) == Pong(6)
        nursery.cancel_scope.cancel()


async def test_self_dial_is_refused(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        with pytest.raises(PeerUnreachable, match="own key"):
            await a.connect(address_of(a))
        nursery.cancel_scope.cancel()


async def test_unreachable_address(make_transport: TransportFactory) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a")
        gone = await start_node(nursery, make_transport(), "gone")
        target = address_of(gone)
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(), "a2")
        with pytest.raises(PeerUnreachable):
            await a.connect(target)
        nursery.cancel_scope.cancel()


def test_keys_are_distinct() -> None:
    assert seed("node a") != seed("node b")
