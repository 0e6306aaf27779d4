"""A put reuses a small network's last placement lookup (node.records.small_network):
only while the lookup found fewer nodes than a bucket, for a bounded time, and never
after a node joined or a holder chosen from it failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from node.assembly import Node
from node.records.small_network import REUSE_FOR, SmallNetworkLookups
from node.sim.nodes import segments
from protocol.dht.contact import Contact
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, read_all, small_config

SEGMENT = 64 * 1024


def contact(byte: int) -> Contact:
    return Contact(bytes([byte]) * 32, f"mem-{byte}:1")


def test_a_lookup_short_of_a_bucket_is_reused_until_it_goes_stale() -> None:
    lookups = SmallNetworkLookups(bucket_size=4, reuse_for=10)
    table = [contact(1), contact(2), contact(3)]
    lookups.found(table[:2], table, now=100)  # contact 3 did not answer: still no newcomer
    assert lookups.reusable(table, now=105) == table[:2]
    assert lookups.reusable(table, now=109.9) == table[:2]
    assert lookups.reused == 2
    assert lookups.reusable(table, now=110) is None  # stale
    assert lookups.reusable(table, now=105) is None  # and forgotten


def test_a_newcomer_a_failed_holder_or_a_full_bucket_means_a_new_lookup() -> None:
    lookups = SmallNetworkLookups(bucket_size=4, reuse_for=10)
    table = [contact(1), contact(2)]
    lookups.found(table, table, now=0)
    assert lookups.reusable([*table, contact(9)], now=1) is None  # a node joined since

    lookups.found(table, table, now=2)
    lookups.forget()  # a holder chosen from it failed
    assert lookups.reusable(table, now=3) is None

    whole = [contact(i) for i in range(1, 5)]
    lookups.found(whole, whole, now=4)  # a bucket's worth: the network may be larger
    assert lookups.reusable(whole, now=5) is None

    lookups.found(table, table, now=6)
    assert lookups.reusable(table, now=5) is None  # a clock that went back: not trusted


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
