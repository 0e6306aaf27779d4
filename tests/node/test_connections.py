"""Connection manager behaviour on the in-memory transport, under the autojump clock."""

from __future__ import annotations

import threading

import msgpack
import pytest
import trio
import trio.testing

from node.config.addresses import PeerAddress
from node.config.network import Limits
from node.net import connections, peer
from node.net.channel import SecureChannel, open_client_channel
from node.net.connections import ConnectionManager
from node.net.dispatch import base_dispatcher
from node.net.errors import DialBackoff, PeerClosed, PeerUnreachable
from node.sim.memory import MemoryNetwork
from protocol.net.boxstream import BoxWriter
from protocol.net.messages import (
    Echo,
    EchoReply,
    Envelope,
    Kind,
    Ping,
    Pong,
    decode_envelope,
)
from tests.node.nodes import address_of, start_node
from tests.protocol.keys import NETWORK, seed, signing_key


async def raw_channel(network: MemoryNetwork, target: ConnectionManager) -> SecureChannel:
    assert target.address is not None
    stream = await network.transport().connect(target.address)
    return await open_client_channel(
        stream,
        network_key=NETWORK,
        identity=signing_key("raw client"),
        server_public=target.public_key,
        ephemeral_seed=seed("raw eph"),
    )


async def test_truncated_handshake_times_out(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    limits = Limits(handshake_timeout=5)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a", limits=limits)
        assert a.address is not None
        stream = await network.transport().connect(a.address)
        await stream.send_all(b"\x00" * 30)  # half a hello, then silence
        start = trio.current_time()
        with trio.fail_after(60):
            assert await stream.receive_some(100) == b""  # the server hung up
        assert 5 <= trio.current_time() - start < 6
        assert a.stats.handshake_failures == 1
        nursery.cancel_scope.cancel()


async def test_flood_of_half_open_connections(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    limits = Limits(handshake_timeout=5, max_handshakes=4)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a", limits=limits)
        b = await start_node(nursery, network.transport(), "b")
        assert a.address is not None
        idle = [await network.transport().connect(a.address) for _ in range(10)]
        await trio.testing.wait_all_tasks_blocked()
        assert a.stats.refused_busy == 6  # beyond the 4 slots: dropped at once
        # While the slots are held a real peer is refused too, but nothing breaks...
        with pytest.raises(PeerUnreachable):
            await b.connect(address_of(a))
        # ...and once the half-open ones time out, service resumes.
        await trio.sleep(6)
        await trio.sleep(b.limits.backoff_initial)
        assert await (await b.connect(address_of(a))).request(Ping(1), Pong) == Pong(1)
        for stream in idle:
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_protocol_violation_drops_only_that_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        good = await b.connect(address_of(a))
        bad = await raw_channel(network, a)
        await trio.testing.wait_all_tasks_blocked()
        assert len(a.peers) == 2
        await bad.stream.send_all(b"\x01" * 100)  # not a box-stream frame
        await trio.testing.wait_all_tasks_blocked()
        assert [p.remote_public_key for p in a.peers] == [b.public_key]
        assert await good.request(Ping(2), Pong) == Pong(2)
        nursery.cancel_scope.cancel()


async def test_unknown_message_type_gets_a_typed_error(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        channel = await raw_channel(network, a)
        await channel.send(msgpack.packb([1, 0, 9, "teleport", {}]))
        answer = decode_envelope(await channel.receive() or b"")
        assert answer.kind is Kind.ERROR and answer.request_id == 9
        assert answer.message.code == "unknown_type"  # type: ignore[attr-defined]
        await channel.send(msgpack.packb([1, 0, 10, "ping", {"nonce": 3}]))
        assert decode_envelope(await channel.receive() or b"").message == Pong(3)
        # A malformed envelope without a usable id ends the connection.
        await channel.send(b"\xc1")
        assert await channel.receive() is None  # goodbye
        nursery.cancel_scope.cancel()


async def test_oversized_frame_ends_the_connection(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(
            nursery, network.transport(), "a", limits=Limits(max_message_bytes=65536)
        )
        channel = await raw_channel(network, a)
        # Announce a 1 MiB message inside a valid box-stream frame (first frame sent).
        session = channel.session
        writer = BoxWriter(session.encrypt_key, session.encrypt_nonce)
        await channel.stream.send_all(writer.seal((1 << 20).to_bytes(4, "big")))
        assert await channel.receive() is None
        nursery.cancel_scope.cancel()


async def test_simultaneous_dials_settle_on_one_connection(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        async with trio.open_nursery() as both:
            both.start_soon(a.connect, address_of(b))
            both.start_soon(b.connect, address_of(a))
        await trio.sleep(1)
        assert len(a.peers) == 1 and len(b.peers) == 1
        # Both kept the same connection: the one their smaller key dialed.
        smaller_is_a = a.public_key < b.public_key
        assert a.peers[0].outbound is smaller_is_a
        assert b.peers[0].outbound is not smaller_is_a
        assert await a.peers[0].request(Ping(4), Pong) == Pong(4)
        assert await b.peers[0].request(Ping(5), Pong) == Pong(5)
        nursery.cancel_scope.cancel()


async def test_concurrent_dials_to_one_peer_share_one_attempt(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        results = []

        async def dial() -> None:
            results.append(await b.connect(address_of(a)))

        async with trio.open_nursery() as many:
            for _ in range(5):
                many.start_soon(dial)
        assert len({id(r) for r in results}) == 1
        assert b.stats.dialed == 1
        nursery.cancel_scope.cancel()


async def test_failed_dial_backs_off_exponentially(autojump_clock: trio.abc.Clock) -> None:
    """The shell follows protocol.net.dialing.Backoff: jittered, doubling, capped."""
    network = MemoryNetwork()
    limits = Limits(backoff_initial=2, backoff_max=5)
    async with trio.open_nursery() as nursery:
        b = await start_node(nursery, network.transport(), "b", limits=limits)
        ghost = PeerAddress(bytes(signing_key("ghost").verify_key), "mem-999", 1)
        waits = []
        for _ in range(4):
            with pytest.raises(PeerUnreachable, match="refused"):
                await b.connect(ghost)
            with pytest.raises(DialBackoff) as caught:
                await b.connect(ghost)  # no dial while the failure cools down
            waits.append(caught.value.retry_in)
            await trio.sleep(caught.value.retry_in)
        steps = [2, 4, 5, 5]
        assert all(step / 2 <= wait <= step for wait, step in zip(waits, steps, strict=True))
        nursery.cancel_scope.cancel()


async def test_idle_connections_are_closed(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    limits = Limits(idle_timeout=60)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a", limits=limits)
        b = await start_node(nursery, network.transport(), "b", limits=limits)
        connection = await b.connect(address_of(a))
        await trio.sleep(30)
        assert await connection.request(Ping(6), Pong) == Pong(6)  # activity resets the clock
        await trio.sleep(50)
        assert connection.is_open
        await trio.sleep(40)
        assert connection.closed.is_set()
        assert b.peers == [] and a.peers == []
        assert b.stats.idle_closed + a.stats.idle_closed >= 1
        nursery.cancel_scope.cancel()


async def test_connection_limit(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a", limits=Limits(max_connections=1))
        b = await start_node(nursery, network.transport(), "b")
        c = await start_node(nursery, network.transport(), "c")
        await b.connect(address_of(a))
        connection = await c.connect(address_of(a))  # handshake completes, then dropped
        await trio.testing.wait_all_tasks_blocked()
        assert not connection.is_open
        assert a.stats.refused_full == 1
        assert [p.remote_public_key for p in a.peers] == [b.public_key]
        nursery.cancel_scope.cancel()


async def test_dial_requires_serving() -> None:
    manager = ConnectionManager(
        identity=signing_key("lonely"),
        network_key=NETWORK,
        transport=MemoryNetwork().transport(),
        handler=base_dispatcher(),
    )
    with pytest.raises(RuntimeError, match="serve"):
        await manager.connect(PeerAddress(bytes(signing_key("x").verify_key), "mem-1", 1))


async def test_a_broken_stream_fails_calls_as_peer_closed(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        connection = await b.connect(address_of(a))
        await connection.channel.stream.aclose()  # the transport dies under the connection
        with pytest.raises(PeerClosed):
            await connection.call(Ping(1))
        await trio.testing.wait_all_tasks_blocked()
        assert b.peers == []
        # A fresh dial works again.
        assert await (await b.connect(address_of(a))).request(Ping(2), Pong) == Pong(2)
        nursery.cancel_scope.cancel()


async def test_a_bug_on_one_connection_does_not_stop_the_node(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")

        async def buggy(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a bug in the accept path")

        monkeypatch.setattr(connections, "open_server_channel", buggy)
        with pytest.raises(PeerUnreachable):
            await b.connect(address_of(a))
        monkeypatch.undo()
        await trio.sleep(b.limits.backoff_initial)
        assert await (await b.connect(address_of(a))).request(Ping(7), Pong) == Pong(7)
        nursery.cancel_scope.cancel()


async def test_backoff_is_per_key_at_an_address(autojump_clock: trio.abc.Clock) -> None:
    # A member that advertises an honest node's address under its own key fails to be
    # dialled there; the honest node at that address is still dialled at once.
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        honest = address_of(a)
        liar = PeerAddress(bytes(signing_key("liar").verify_key), honest.host, honest.port)
        with pytest.raises(PeerUnreachable):
            await b.connect(liar)
        with pytest.raises(DialBackoff):
            await b.connect(liar)
        connection = await b.connect(honest)
        assert connection.remote_public_key == a.public_key
        nursery.cancel_scope.cancel()


async def test_one_host_cannot_take_every_handshake_slot(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # 200 half-open connections from one address: the 5th and later are dropped at
    # once and logged once; peers from elsewhere still get through.
    network = MemoryNetwork()
    limits = Limits(handshake_timeout=60, max_handshakes=32, max_handshakes_per_host=4)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a", limits=limits)
        b = await start_node(nursery, network.transport(), "b")
        assert a.address is not None
        flooder = network.transport("mem-flood:9")
        idle = [await flooder.connect(a.address) for _ in range(200)]
        await trio.testing.wait_all_tasks_blocked()
        assert a.stats.refused_busy == 196
        refusals = [r for r in caplog.records if r.getMessage() == "refused"]
        assert len(refusals) == 1
        for _ in range(12):  # legitimate handshakes from other hosts all succeed
            peer = await start_node(nursery, network.transport(), "peer")
            assert await (await peer.connect(address_of(a))).request(Ping(2), Pong) == Pong(2)
        assert await (await b.connect(address_of(a))).request(Ping(1), Pong) == Pong(1)
        for stream in idle:
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_large_envelope_is_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # While one peer's large envelope decodes, the node serves another peer: the
    # decoder below only finishes after a ping from a second peer was answered, which
    # it asks the trio thread for (impossible if it ran on that thread). No autojump
    # clock: a worker thread is at work, and nothing here is timed.
    network = MemoryNetwork()
    threads: list[str] = []
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        big_sender = await start_node(nursery, network.transport(), "b")
        other = await start_node(nursery, network.transport(), "c")
        to_a = await big_sender.connect(address_of(a))
        other_to_a = await other.connect(address_of(a))

        async def other_peer_served() -> Pong:
            return await other_to_a.request(Ping(7), Pong)

        def decode_after_others_ran(payload: bytes) -> Envelope:
            if len(payload) >= peer.DECODE_IN_WORKER_BYTES:
                threads.append(threading.current_thread().name)
                assert trio.from_thread.run(other_peer_served) == Pong(7)
            return decode_envelope(payload)

        monkeypatch.setattr(peer, "decode_envelope", decode_after_others_ran)
        # As for an envelope of more values than the inline budget (a list of many small
        # items): with a budget of none, every large envelope goes to the worker.
        monkeypatch.setattr(peer, "INLINE_DECODE_ITEMS", 0)
        data = b"x" * (peer.DECODE_IN_WORKER_BYTES + 1)
        with trio.fail_after(60):  # a deadlock guard, not a timing assertion
            assert (await to_a.request(Echo(data), EchoReply)).data == data
        assert threads and all(name != threading.main_thread().name for name in threads)
        # Small envelopes stay inline (no thread hand-off for every ping).
        threads.clear()
        assert await to_a.request(Ping(8), Pong) == Pong(8)
        assert threads == []
        nursery.cancel_scope.cancel()


async def test_a_large_envelope_of_few_values_is_decoded_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A batch of a few large blocks decodes in microseconds: no thread hand-off for it.
    network = MemoryNetwork()
    worker_decodes: list[int] = []

    def counted(payload: bytes) -> Envelope:
        worker_decodes.append(len(payload))
        return decode_envelope(payload)

    monkeypatch.setattr(peer, "decode_envelope", counted)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a")
        b = await start_node(nursery, network.transport(), "b")
        to_a = await b.connect(address_of(a))
        data = b"y" * (4 * peer.DECODE_IN_WORKER_BYTES)
        assert (await to_a.request(Echo(data), EchoReply)).data == data
        assert worker_decodes == []
        nursery.cancel_scope.cancel()
