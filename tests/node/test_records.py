"""Put and get across whole nodes (the daemon's assembly) on the memory transport."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import nacl.signing
import pytest
import trio
import trio.testing

from node.control.ops import ControlOps
from node.records import service
from node.records.errors import RecordError
from node.sim.nodes import segments
from protocol.control.commands import ListRecords
from protocol.ledger.entries import GrantBody
from storage.codec.crypt import SEALED_KEY_SIZE
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, knows_grant, read_all, small_config


async def test_put_on_one_node_read_on_another_after_losing_n_minus_k(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer, reader = cluster.nodes[1], cluster.nodes[4]
        data = os.urandom(300_000)
        result = await writer.records.put(
            segments(data, 64 * 1024),
            metadata=RecordMetadata(filename="scan.pdf"),
            grantees=[reader.public_key],
        )
        assert result.verdict.holders == 5 and len(set(result.holders.values())) == 5
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
        await cluster.add_many(nursery, 3, small_config())
        with pytest.raises(RecordError, match="network too small: 3 nodes answered"):
            await cluster.nodes[0].records.put(
                segments(b"x" * 1000, 64 * 1024), metadata=RecordMetadata()
            )
        assert len(cluster.nodes[0].ledger.book) == 0
        nursery.cancel_scope.cancel()


async def test_the_record_and_its_grants_are_one_ledger_batch(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer = cluster.nodes[0]
        batches: list[list[str]] = []
        writer.ledger.subscribe(lambda entries: batches.append([str(e.type) for e in entries]))
        await writer.records.put(
            segments(b"y" * 5000, 64 * 1024),
            metadata=RecordMetadata(),
            grantees=[cluster.nodes[1].public_key],
        )
        assert batches[0] == ["record", "grant", "grant"]
        nursery.cancel_scope.cancel()


async def test_a_bad_grantee_key_is_refused_before_anything_is_stored(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        not_a_point = bytes([0x02] + [0] * 30 + [0x80])
        with pytest.raises(RecordError, match="not a valid Ed25519 public key"):
            await cluster.nodes[0].records.put(
                segments(b"z" * 5000, 64 * 1024),
                metadata=RecordMetadata(),
                grantees=[not_a_point],
            )
        assert all(node.shards.holdings.records() == [] for node in cluster.nodes)
        assert len(cluster.nodes[0].ledger.book) == 0
        nursery.cancel_scope.cancel()


async def test_segments_that_stop_before_the_last_record_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())

        async def unfinished() -> AsyncIterator[tuple[bytes, bool]]:
            for _ in range(3):
                yield b"u" * 64 * 1024, False

        with pytest.raises(RecordError, match="ended before its last segment"):
            await cluster.nodes[0].records.put(unfinished(), metadata=RecordMetadata())
        assert len(cluster.nodes[0].ledger.book) == 0
        for node in cluster.nodes:  # the writer told every holder to drop what it took
            assert node.shards.holdings.records() == []
            assert node.parts.store.used_bytes == 0
        nursery.cancel_scope.cancel()


async def test_shards_of_an_unfinished_upload_are_collected_after_the_grace(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def writer_died(*args: object) -> int:  # it cannot tell the holders to drop
        return 0

    monkeypatch.setattr(service, "drop_everywhere", writer_died)
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(transfer_batch_bytes=32 * 1024))
        kept = os.urandom(100_000)
        result = await cluster.nodes[0].records.put(
            segments(kept, 64 * 1024), metadata=RecordMetadata()
        )

        async def unfinished() -> AsyncIterator[tuple[bytes, bool]]:
            for _ in range(8):  # batches of the blocks reach the holders
                yield b"o" * 64 * 1024, False

        with pytest.raises(RecordError):
            await cluster.nodes[0].records.put(unfinished(), metadata=RecordMetadata())
        await trio.testing.wait_all_tasks_blocked()
        orphans = [n for n in cluster.nodes if len(n.shards.holdings.records()) > 1]
        assert orphans  # holders kept blocks of the failed upload
        for node in cluster.nodes:
            while result.record_id not in node.ledger.state().records:
                await node.ledger.changed()
            known = node.ledger.state().records
            assert await node.shards.collect(known, before_ms=0) == (0, 0)  # too young
            # (a batch still being written in a worker thread may have landed since)
            orphaned = len(node.shards.holdings.records()) > 1
            used = node.parts.store.used_bytes
            collected = await node.shards.collect(known, before_ms=node.clock_ms() + 1)
            assert collected[0] == (1 if orphaned else 0)
            assert node.shards.holdings.records() == (
                [result.record_id] if node.shards.holdings.indices(result.record_id)[0] else []
            )
            if orphaned:
                assert node.parts.store.used_bytes < used
            else:
                assert node.parts.store.used_bytes == used
        assert await read_all(cluster.nodes[0], result.record_id) == kept
        nursery.cancel_scope.cancel()


async def test_grants_written_at_once_extend_one_feed_without_forking(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Two operators granting at the same moment: each write follows the other's head.
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer = cluster.nodes[0]
        result = await writer.records.put(
            segments(b"z" * 5000, 64 * 1024), metadata=RecordMetadata()
        )
        before = writer.ledger.book.head_entry(writer.public_key)
        assert before is not None
        grantees = [nacl.signing.SigningKey.generate().verify_key.encode() for _ in range(8)]
        async with trio.open_nursery() as granting:
            for grantee in grantees:
                granting.start_soon(writer.records.grant, result.record_id, grantee)
        assert writer.public_key not in writer.ledger.book.flagged
        state = writer.ledger.state()
        for grantee in grantees:
            assert state.grant_for(result.record_id, grantee, writer.clock_ms()) is not None
        head = writer.ledger.book.head_entry(writer.public_key)
        assert head is not None and head.seq == before.seq + len(grantees)
        nursery.cancel_scope.cancel()


async def test_a_junk_grant_does_not_break_the_grantees_ls(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Any owner may grant anything to anyone: a sealed key that opens to nothing is
    # listed without a name, and the grantee's other records still are.
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        owner, grantee = cluster.nodes[0], cluster.nodes[1]
        named = RecordMetadata(filename="scan.dcm")
        junk = await owner.records.put(segments(b"j" * 5000, 64 * 1024), metadata=named)
        good = await owner.records.put(
            segments(b"g" * 5000, 64 * 1024), metadata=named, grantees=[grantee.public_key]
        )
        await owner.ledger.append(
            GrantBody(junk.record_id, grantee.public_key, os.urandom(SEALED_KEY_SIZE), 0)
        )
        await knows_grant(grantee, junk.record_id, grantee.public_key)
        await knows_grant(grantee, good.record_id, grantee.public_key)
        reply = await ControlOps(grantee, started=0).list_records(ListRecords(None))
        rows = {row.record_id: row for row in reply.records}
        assert rows[junk.record_id].filename is None
        assert rows[good.record_id].filename == "scan.dcm"
        nursery.cancel_scope.cancel()
