"""A put reuses a small network's last placement lookup (node.records.small_network):
only while the lookup found fewer nodes than a bucket, every node asked and every node
known among them, for a bounded time, and never after a node joined, a holder chosen
from it failed, or a put from it fell short."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from node.assembly import Node
from node.net.errors import PeerUnreachable
from node.net.rpc_port import RpcPort
from node.records.errors import NetworkTooSmall
from node.records.small_network import REUSE_FOR, SmallNetworkLookups
from node.sim.nodes import segments
from protocol.dht.contact import Contact
from protocol.dht.messages import FindNode
from protocol.net.messages import Message
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, read_all, small_config

SEGMENT = 64 * 1024


def contact(byte: int) -> Contact:
    return Contact(bytes([byte]) * 32, f"mem-{byte}:1")


def test_a_lookup_short_of_a_bucket_is_reused_until_it_goes_stale() -> None:
    lookups = SmallNetworkLookups(bucket_size=4, reuse_for=10)
    table = [contact(1), contact(2), contact(3)]
    lookups.found(table, table, now=100, failures=0)
    assert lookups.reusable(table, now=105) == table
    assert lookups.reusable(table, now=109.9) == table
    assert lookups.reused == 2
    assert lookups.reusable(table, now=110) is None  # stale
    assert lookups.reusable(table, now=105) is None  # and forgotten


def test_a_newcomer_a_failed_holder_or_a_full_bucket_means_a_new_lookup() -> None:
    lookups = SmallNetworkLookups(bucket_size=4, reuse_for=10)
    table = [contact(1), contact(2)]
    lookups.found(table, table, now=0, failures=0)
    assert lookups.reusable([*table, contact(9)], now=1) is None  # a node joined since

    lookups.found(table, table, now=2, failures=0)
    lookups.forget()  # a holder chosen from it failed
    assert lookups.reusable(table, now=3) is None

    whole = [contact(i) for i in range(1, 5)]
    lookups.found(whole, whole, now=4, failures=0)  # a bucket's worth: maybe larger
    assert lookups.reusable(whole, now=5) is None

    lookups.found(table, table, now=6, failures=0)
    assert lookups.reusable(table, now=5) is None  # a clock that went back: not trusted


def test_a_lookup_that_missed_a_node_is_never_reused() -> None:
    lookups = SmallNetworkLookups(bucket_size=4, reuse_for=10)
    table = [contact(1), contact(2), contact(3)]
    lookups.found(table[:2], table, now=0, failures=0)  # a known node is not in it
    assert lookups.reusable(table, now=1) is None
    lookups.found(table[:2], table[:2], now=2, failures=1)  # a node it asked was silent
    assert lookups.reusable(table[:2], now=3) is None


class CountedLookups:
    """Counts the DHT node lookups the writer's placement makes (its DHT upkeep and
    announcements make their own, not counted)."""

    def __init__(self, node: Node) -> None:
        self.count = 0
        self._dht = node.records.reach.dht
        node.records.reach.dht = self  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dht, name)

    async def find_node(self, target: bytes) -> Any:
        self.count += 1
        return await self._dht.find_node(target)


async def counted_writer(
    cluster: Cluster, nursery: trio.Nursery, count: int
) -> tuple[Node, CountedLookups]:
    """`count` nodes (n = 5, happy = 4, the DHT's k is 8); the first, its lookups counted."""
    await cluster.add_many(nursery, count, small_config(happy=4))
    await trio.testing.wait_all_tasks_blocked()
    writer = cluster.nodes[0]
    return writer, CountedLookups(writer)


async def put(writer: Node, data: bytes) -> bytes:
    result = await writer.records.put(segments(data, SEGMENT), metadata=RecordMetadata())
    return result.record_id


async def test_puts_in_a_small_network_share_a_lookup_and_a_dead_holder_ends_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        writer, lookups = await counted_writer(cluster, nursery, 5)  # an index on each
        data = [bytes([i]) * (3 * SEGMENT + i) for i in range(5)]

        first = await put(writer, data[0])
        second = await put(writer, data[1])
        assert lookups.count == 1 and writer.records.reach.small.reused == 1
        assert await read_all(writer, second) == data[1]

        await trio.sleep(REUSE_FOR)  # stale: the next put looks up again
        await put(writer, data[2])
        assert lookups.count == 2

        # A node dies: the put that chose it from the old answer stores the record on
        # the four others (happy = 4), and the next put looks the network up again.
        cluster.crash(cluster.nodes[4])
        await trio.testing.wait_all_tasks_blocked()
        third = await put(writer, data[3])
        assert lookups.count == 2  # the answer still had the dead node
        assert await read_all(writer, third) == data[3]
        await put(writer, data[4])
        assert lookups.count == 3
        assert await read_all(writer, first) == data[0]
        nursery.cancel_scope.cancel()


async def test_a_node_that_joins_is_found_by_the_next_put(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        writer, lookups = await counted_writer(cluster, nursery, 4)
        await put(writer, b"a" * SEGMENT)
        newcomer = await cluster.add(nursery, small_config(happy=4))
        await trio.testing.wait_all_tasks_blocked()
        assert newcomer.contact in writer.dht.routing  # it introduced itself on joining
        result = await writer.records.put(
            segments(b"b" * SEGMENT, SEGMENT), metadata=RecordMetadata(), require_full=True
        )
        assert lookups.count == 2
        assert newcomer.contact.public_key in result.holders.values()
        nursery.cancel_scope.cancel()


class SilentTo:
    """The writer's DHT port, with FindNode to some nodes failing while they are listed
    (a blip: a timeout, a backoff, a restart)."""

    def __init__(self, port: RpcPort, silent: set[bytes]) -> None:
        self.port = port
        self.silent = silent

    async def call(self, contact: Contact, message: Message, timeout: float) -> Message:
        if contact.public_key in self.silent and isinstance(message, FindNode):
            raise PeerUnreachable("a blip")
        return await self.port.call(contact, message, timeout)


async def test_a_node_that_blinked_during_a_lookup_is_found_by_the_next_put(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # From an adversarial review: a lookup that missed a node became "the whole
    # network" for 30 s, and every put failed although the node was back at once.
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        writer, lookups = await counted_writer(cluster, nursery, 4)  # happy = all four
        blip = SilentTo(writer.dht.port, {cluster.nodes[3].public_key})
        writer.dht.port = blip
        with pytest.raises(NetworkTooSmall):  # fair: one of four is silent just now
            await put(writer, b"a" * SEGMENT)
        blip.silent.clear()  # back at once
        record = await put(writer, b"b" * SEGMENT)
        assert lookups.count == 2 and writer.records.reach.small.reused == 0
        assert await read_all(writer, record) == b"b" * SEGMENT
        nursery.cancel_scope.cancel()


async def test_a_network_larger_than_a_bucket_is_never_taken_for_a_small_one(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Twelve nodes, the DHT's k is 8: a lookup with five nodes silent finds fewer than
    # k, but it missed nodes, so the next puts look up again.
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        writer, lookups = await counted_writer(cluster, nursery, 12)
        silent = {node.public_key for node in cluster.nodes[1:6]}
        writer.dht.port = SilentTo(writer.dht.port, silent)
        await put(writer, b"a" * SEGMENT)
        silent.clear()
        for i in range(3):
            await put(writer, bytes([i]) * SEGMENT)
        assert lookups.count == 4 and writer.records.reach.small.reused == 0
        nursery.cancel_scope.cancel()
