"""Records of every block hash in use work end to end on current nodes: a put whose
blocks come before their manifest (so holders name them before they know the version),
its storage proofs, scrub, repair and reads, for version 2 (BLAKE2b) and 3 (BLAKE3); and
a manifest of the other version cannot stand in for the one the ledger records."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import trio

from node.assembly import Node
from node.net.errors import RemoteError
from node.sim.nodes import segments
from protocol.records.messages import StoreShards
from storage.codec.manifest import BLAKE3_VERSION, PADDED_VERSION, RecordMetadata
from tests.node.cluster import Cluster, harm_first_block, holders_of, read_all, small_config

BATCH = 64 * 1024


def named_by(node: Node, record_id: bytes) -> set[bytes]:
    manifest = node.shards.manifest(record_id)
    assert manifest is not None
    complete, _ = node.shards.holdings.indices(record_id)
    return {
        manifest.block_hash(segment, index)
        for index in complete
        for segment in range(manifest.segment_count)
    }


@pytest.mark.parametrize("version", [PADDED_VERSION, BLAKE3_VERSION])
async def test_put_proofs_scrub_repair_and_read_for_each_block_hash(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    version: int,
) -> None:
    # The writer's `storage.manifest_version` setting chooses the format (2 while old
    # nodes remain in the network, docs/operations.md).
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        config = small_config(
            transfer_batch_bytes=BATCH, scrub_bytes=10**9, manifest_version=version
        )
        await cluster.add_many(nursery, 8, config)
        writer = cluster.nodes[0]
        data = os.urandom(600_000)  # ten segments, several batches before the manifest
        result = await writer.records.put(segments(data, BATCH), metadata=RecordMetadata())
        assert result.manifest.version == version
        assert result.verdict.holders == 5  # every holder passed its storage proof
        for node in cluster.nodes:
            while result.record_id not in node.ledger.state().records:
                await node.ledger.changed()
        holders = holders_of(cluster, result.record_id)
        for node in holders:
            if node is writer:
                continue
            # Held under the names the manifest gives, nothing else (no BLAKE3 copies
            # of a version 2 record's early blocks).
            assert set(node.parts.store.digests()) == named_by(node, result.record_id)
        rotten, lost = [n for n in holders if n is not writer][:2]
        for node, harm in ((rotten, "rot"), (lost, "loss")):
            harm_first_block(node, harm)
        _, damaged = await rotten.shards.scrub_some(10**9)
        assert [record for record, _ in damaged] == [result.record_id]
        for _ in range(2):
            for node in cluster.nodes:
                await node.upkeep.run_pass()
        health = await writer.repairer.check(result.record_id, verify=True)
        assert health.healthy and not health.corrupt
        for node in holders_of(cluster, result.record_id):
            assert (await node.shards.scrub_some(10**9))[1] == []
        assert await read_all(writer, result.record_id) == data  # k blocks fetched, checked
        nursery.cancel_scope.cancel()


async def test_a_manifest_of_the_other_version_is_not_the_one_the_ledger_records(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Same fields, same block hashes, version 2 for 3 or 3 for 2: refused by holders
    (and readers, which compare the same digest), since each version hashes its own way."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 8, small_config(transfer_batch_bytes=BATCH))
        writer, member = cluster.nodes[0], cluster.nodes[7]
        result = await writer.records.put(
            segments(os.urandom(300_000), BATCH), metadata=RecordMetadata()
        )
        manifest = result.manifest
        assert manifest.version == BLAKE3_VERSION
        relabelled = dataclasses.replace(manifest, version=PADDED_VERSION)
        assert relabelled.digest() != manifest.digest()
        others = [
            n
            for n in cluster.nodes
            if n not in holders_of(cluster, result.record_id) and n is not member
        ]
        assert others
        for node in others:
            while result.record_id not in node.ledger.state().records:
                await node.ledger.changed()
            batch = StoreShards(result.record_id, relabelled.encode(), 0, 0, (), False)
            with pytest.raises(RemoteError, match="not the one the ledger records"):
                await member.port.call(node.contact, batch, 5.0)
            assert result.record_id not in node.shards.holdings.records()
        nursery.cancel_scope.cancel()
