"""DHT nodes on real sockets (127.0.0.1): they find each other and each other's providers."""

from __future__ import annotations

import os
import time

import nacl.signing
import trio

from node.config.dht import DhtConfig
from node.dht.service import DhtService
from node.net.connections import ConnectionManager
from node.net.dispatch import base_dispatcher
from node.net.rpc_port import ManagerPort
from node.net.transport import TcpTransport
from tests.protocol.keys import NETWORK, seed


async def start(nursery: trio.Nursery, name: str, bootstrap: list[DhtService]) -> DhtService:
    identity = nacl.signing.SigningKey(seed(f"tcp dht {name}"))
    dispatcher = base_dispatcher()
    manager = ConnectionManager(
        identity=identity,
        network_key=NETWORK,
        transport=TcpTransport("127.0.0.1:0"),
        handler=dispatcher,
    )
    address = await nursery.start(manager.serve)
    dht = DhtService(
        identity=identity,
        address=address,
        port=ManagerPort(manager),
        random_bytes=os.urandom,
        wall_clock=time.time,
        config=DhtConfig(k=4, query_timeout=2.0),
    )
    dht.install(dispatcher)
    await nursery.start(dht.serve, [b.contact for b in bootstrap])
    return dht


async def test_four_nodes_find_each_other_and_providers() -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            first = await start(nursery, "0", [])
            others = [await start(nursery, str(i), [first]) for i in range(1, 4)]
            nodes = [first, *others]
            for node in nodes:
                found = await node.find_node(node.contact.node_id)
                expected = {n.contact.public_key for n in nodes if n is not node}
                assert {c.public_key for c in found.closest} == expected
            key = os.urandom(20)
            assert await nodes[2].provide(key) >= 2
            for node in nodes:
                providers = (await node.find_providers(key)).providers
                assert [p.provider.public_key for p in providers] == [nodes[2].contact.public_key]
            nursery.cancel_scope.cancel()
