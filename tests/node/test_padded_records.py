"""Whole nodes store records padded: the ledger and every holder's manifest show the
Padmé size only (and the ledger minutes, not milliseconds), readers get exactly the
record, reads of the padding segments survive losses like any other, and records
stored in the old format still read."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from node.assembly import Node
from node.control.ops import ControlOps
from node.records import service
from node.sim.nodes import segments
from protocol.control.commands import ListRecords
from protocol.ledger.entries import EntryType, RecordBody
from protocol.ledger.timestamps import is_coarse
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import (
    BLAKE3_VERSION,
    LEGACY_VERSION,
    PADDED_VERSION,
    RecordMetadata,
)
from storage.codec.padme import padme
from tests.node.cluster import Cluster, holders_of, knows_grant, read_all, small_config

SEGMENT = 64 * 1024


def ledger_sizes(node: Node, record_id: bytes) -> list[int]:
    book = node.ledger.book
    return [
        e.body.size
        for e in book.entries()
        if e.type is EntryType.RECORD and isinstance(e.body, RecordBody)
        if e.body.record_id == record_id
    ]


async def test_what_members_see_is_padded_and_readers_get_the_record(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer, reader = cluster.nodes[0], cluster.nodes[5]
        data = os.urandom(4 * SEGMENT + 1)  # pads by 8 KiB more than the record's last byte
        result = await writer.records.put(
            segments(data, SEGMENT),
            metadata=RecordMetadata(filename="scan.pdf"),
            grantees=[reader.public_key],
        )
        assert result.size == len(data) and result.manifest.size == padme(len(data))
        await knows_grant(reader, result.record_id, reader.public_key)
        assert ledger_sizes(reader, result.record_id) == [padme(len(data))]
        assert reader.ledger.state().records[result.record_id].size == padme(len(data))
        assert all(is_coarse(e.timestamp) for e in reader.ledger.book.entries())  # minutes
        for holder in holders_of(cluster, result.record_id):
            manifest = holder.shards.manifest(result.record_id)
            assert manifest is not None and manifest.version == BLAKE3_VERSION  # padded
            assert manifest.size == padme(len(data)) != len(data)
        assert await read_all(reader, result.record_id) == data
        # The owner's listing opens the true size; the ledger row would show the padded one.
        (row,) = (await ControlOps(writer, started=0.0).list_records(ListRecords(None))).records
        assert row.size == len(data) and row.filename == "scan.pdf"
        nursery.cancel_scope.cancel()


async def test_padding_segments_survive_losses_like_the_rest(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A record whose padding fills whole segments reads back after n-k holders are lost."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config(segment_size=1024))
        writer = cluster.nodes[0]
        data = os.urandom(2**14 + 1)  # 16 KiB + 1 pads to 17 KiB: one whole padding segment
        result = await writer.records.put(segments(data, 1024), metadata=RecordMetadata())
        assert result.manifest.segment_count == 17 == padme(len(data)) // 1024
        lost = [n for n in holders_of(cluster, result.record_id) if n is not writer][:2]
        for node in lost:
            cluster.crash(node)
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


def _writing(version: int) -> Callable[..., RecordEncoder]:
    """A node of an older release: its encoder writes `version` whatever it is asked."""

    def make(**kwargs: Any) -> RecordEncoder:
        return RecordEncoder(**{**kwargs, "version": version})

    return make


async def test_records_stored_in_the_old_format_still_read(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config())
        writer, reader = cluster.nodes[1], cluster.nodes[4]
        data = os.urandom(100_000)
        with monkeypatch.context() as old_node:  # a node from before padding
            old_node.setattr(service, "RecordEncoder", _writing(LEGACY_VERSION))
            old = await writer.records.put(
                segments(data, SEGMENT),
                metadata=RecordMetadata(filename="old.pdf"),
                grantees=[reader.public_key],
            )
        with monkeypatch.context() as blake2b_node:  # a node from before BLAKE3 (issue 17)
            blake2b_node.setattr(service, "RecordEncoder", _writing(PADDED_VERSION))
            padded = await writer.records.put(
                segments(data, SEGMENT), metadata=RecordMetadata(), grantees=[reader.public_key]
            )
        new = await writer.records.put(
            segments(data, SEGMENT), metadata=RecordMetadata(), grantees=[reader.public_key]
        )
        assert old.manifest.version == LEGACY_VERSION and old.manifest.size == len(data)
        assert padded.manifest.version == PADDED_VERSION
        assert new.manifest.version == BLAKE3_VERSION
        for record in (old, padded, new):
            await knows_grant(reader, record.record_id, reader.public_key)
            assert ledger_sizes(reader, record.record_id) == [record.manifest.size]
            assert await read_all(reader, record.record_id) == data
        rows = (await ControlOps(writer, started=0.0).list_records(ListRecords(None))).records
        assert sorted(r.size for r in rows) == [len(data)] * 3
        assert {r.filename for r in rows} == {"old.pdf", ""}
        nursery.cancel_scope.cancel()
