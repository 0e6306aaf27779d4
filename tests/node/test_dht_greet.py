"""A peer that connects is (re)added to the routing table; a member cannot abuse Hello."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import nacl.signing
import pytest
import trio
import trio.testing

from node.config.addresses import PeerAddress, parse_host_port
from node.config.dht import DhtConfig
from node.dht.service import DhtService
from node.net.connections import ConnectionManager
from node.net.dispatch import Dispatcher, base_dispatcher
from node.net.errors import RemoteError
from node.net.rpc_port import Caller, ManagerPort
from node.sim.memory import MemoryNetwork
from protocol.dht.contact import ContactInfo
from protocol.dht.messages import Hello
from protocol.ids import node_id
from protocol.net.messages import Message, Ping, Pong
from tests.protocol.keys import NETWORK, seed


@dataclass
class Peer:
    manager: ConnectionManager
    dht: DhtService | None

    @property
    def address(self) -> PeerAddress:
        assert self.manager.address is not None
        host, port = parse_host_port(self.manager.address)
        return PeerAddress(self.manager.public_key, host, port)


async def start(
    nursery: trio.Nursery,
    network: MemoryNetwork,
    name: str,
    *,
    with_dht: bool = True,
    dispatcher: Dispatcher | None = None,
) -> Peer:
    identity = nacl.signing.SigningKey(seed(f"greet {name}"))
    dispatcher = dispatcher or base_dispatcher()
    manager = ConnectionManager(
        identity=identity, network_key=NETWORK, transport=network.transport(), handler=dispatcher
    )
    address = await nursery.start(manager.serve)
    if not with_dht:
        return Peer(manager, None)
    rng = random.Random(name)
    dht = DhtService(
        identity=identity,
        address=address,
        port=ManagerPort(manager),
        random_bytes=rng.randbytes,
        wall_clock=time.time,
        config=DhtConfig(k=4),
    )
    dht.install(dispatcher)
    manager.on_inbound = lambda conn: dht.greet(conn, conn.call)
    await nursery.start(dht.serve, [])
    return Peer(manager, dht)


def knows(peer: Peer, other: Peer) -> bool:
    assert peer.dht is not None
    return peer.dht.routing.get(node_id(other.manager.public_key)) is not None


async def test_a_peer_that_connects_for_anything_is_added(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, network, "a")
        b = await start(nursery, network, "b")
        connection = await b.manager.connect(a.address)
        assert await connection.request(Ping(1), Pong) == Pong(1)  # not a DHT request
        await trio.testing.wait_all_tasks_blocked()
        assert knows(a, b)
        nursery.cancel_scope.cancel()


async def test_an_evicted_contact_comes_back_when_it_connects_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, network, "a")
        b = await start(nursery, network, "b")
        connection = await b.manager.connect(a.address)
        await trio.testing.wait_all_tasks_blocked()
        assert a.dht is not None and knows(a, b)
        a.dht.routing.remove(node_id(b.manager.public_key))  # evicted while unreachable
        await connection.aclose()
        await trio.testing.wait_all_tasks_blocked()
        await b.manager.connect(a.address)
        await trio.testing.wait_all_tasks_blocked()
        assert knows(a, b)
        nursery.cancel_scope.cancel()


async def test_a_hello_in_another_nodes_name_is_refused(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, network, "a")
        liar = await start(nursery, network, "liar", with_dht=False)
        victim = nacl.signing.SigningKey(seed("greet victim"))
        connection = await liar.manager.connect(a.address)
        forged = ContactInfo(bytes(victim.verify_key), "mem-666:1")
        with pytest.raises(RemoteError, match="sender key differs"):
            await connection.call(Hello(forged))
        assert a.dht is not None
        assert a.dht.routing.get(node_id(bytes(victim.verify_key))) is None
        nursery.cancel_scope.cancel()


async def test_a_greeting_answered_with_someone_elses_contact_adds_nobody(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    victim = nacl.signing.SigningKey(seed("greet victim"))

    async def lie(message: Message, caller: Caller) -> Message:
        return Hello(ContactInfo(bytes(victim.verify_key), "mem-666:1"))

    dispatcher = base_dispatcher()
    dispatcher.route(Hello, lie)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, network, "a")
        liar = await start(nursery, network, "liar", with_dht=False, dispatcher=dispatcher)
        await liar.manager.connect(a.address)
        await trio.testing.wait_all_tasks_blocked()
        assert a.dht is not None
        assert not knows(a, liar)
        assert a.dht.routing.get(node_id(bytes(victim.verify_key))) is None
        nursery.cancel_scope.cancel()


async def test_a_flood_of_hellos_is_one_table_entry(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, network, "a")
        flooder = await start(nursery, network, "flooder", with_dht=False)
        connection = await flooder.manager.connect(a.address)
        mine = ContactInfo(flooder.manager.public_key, "mem-1:1")
        for number in range(1000):
            answer = await connection.call(Hello(ContactInfo(mine.public_key, f"h{number}:1")))
            assert isinstance(answer, Hello)
        assert a.dht is not None and len(a.dht.routing) == 1
        assert knows(a, flooder)
        assert await connection.request(Ping(2), Pong) == Pong(2)
        nursery.cancel_scope.cancel()
