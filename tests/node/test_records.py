"""Put and get across whole nodes (the daemon's assembly) on the memory transport."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from node.records import RecordError
from storage.manifest import RecordMetadata
from tests.node.cluster import Cluster, knows_grant, read_all, segments, small_config


async def test_put_on_one_node_read_on_another_after_losing_n_minus_k(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            await cluster.add(nursery, small_config())
        writer, reader = cluster.nodes[1], cluster.nodes[4]
        data = os.urandom(300_000)
        result = await writer.records.put(
            segments(data, 64 * 1024),
            metadata=RecordMetadata(filename="scan.pdf"),
            grantees=[reader.public_key],
        )
        assert result.confirmed >= 4 and len(set(result.holders.values())) == 5
        await knows_grant(reader, result.record_id, reader.public_key)  # via gossip
        assert await read_all(reader, result.record_id) == data
        # Lose n-k = 2 holders (not the reader): still readable.
        holders = [n for n in cluster.nodes if n.public_key in result.holders.values()]
        for node in [n for n in holders if n is not reader][:2]:
            cluster.crash(node)
        assert await read_all(reader, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_put_without_enough_nodes_records_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            await cluster.add(nursery, small_config())
        with pytest.raises(RecordError, match="network too small: 3 reachable nodes"):
            await cluster.nodes[0].records.put(
                segments(b"x" * 1000, 64 * 1024), metadata=RecordMetadata()
            )
        assert len(cluster.nodes[0].ledger.book) == 0
        nursery.cancel_scope.cancel()
