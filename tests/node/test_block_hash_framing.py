"""A writer cannot frame honest holders with a manifest whose block hashes are the other
algorithm's: holders store a block under a BLAKE3 or a BLAKE2b name (they check without
the manifest), so an auditor must take a block served under its listed name the same way,
or a grantee's audit finds every honest holder "failing" and avoids it for a day
(likewise a listed block of the wrong length, which holders store as named too)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

import storage.codec.encoder
from node.records.fetch import TooFewShards
from node.sim.nodes import segments
from storage.codec import hashing
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, knows_grant, read_all, small_config


async def test_a_manifest_listing_the_other_algorithms_hashes_frames_no_holder(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        config = small_config(transfer_batch_bytes=64 * 1024, manifest_version=2)
        await cluster.add_many(nursery, 6, config)
        writer, grantee = cluster.nodes[0], cluster.nodes[1]
        # The writer lists BLAKE3 block hashes in a version 2 (BLAKE2b) manifest: its
        # early blocks get BLAKE3 names on every holder, so they complete as listed.
        encoder = storage.codec.encoder
        monkeypatch.setattr(encoder, "shard_hasher", lambda v: hashing.shard_hash_v3)
        data = os.urandom(200_000)
        result = await writer.records.put(
            segments(data, 64 * 1024), metadata=RecordMetadata(), size_hint=len(data)
        )
        record_id = result.record_id
        monkeypatch.undo()
        honest = {n.public_key for n in holders_of(cluster, record_id)} - {writer.public_key}
        assert honest  # every holder stored the blocks under the names listed
        await writer.records.grant(record_id, grantee.public_key)
        await knows_grant(grantee, record_id, grantee.public_key)
        health = await grantee.repairer.check(record_id, verify=False)
        assert not health.unproven
        assert not any(grantee.records.reach.distrusted(key) for key in honest)
        # The record itself stays unreadable (readers take their version's hash only):
        # the writer's own loss, not the holders' fault.
        with pytest.raises(TooFewShards):
            await read_all(grantee, record_id)
        nursery.cancel_scope.cancel()
