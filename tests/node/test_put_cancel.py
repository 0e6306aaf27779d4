"""A put cancelled mid-stream (the client hung up, the daemon stopped) leaves nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from node.records.errors import NetworkTooSmall
from node.records.reach import Reachable
from node.sim.nodes import segments
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, small_config

SEGMENT = 64 * 1024


async def test_a_put_cancelled_after_holders_stored_blocks_records_nothing_anywhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        # Small batches: holders have stored blocks by the time the upload stalls.
        await cluster.add_many(nursery, 5, small_config(transfer_batch_bytes=64 * 1024))
        stalled = trio.Event()

        async def stalls() -> AsyncIterator[tuple[bytes, bool]]:
            for number in range(12):
                yield bytes([number]) * SEGMENT, False
            stalled.set()
            await trio.sleep_forever()

        writer = cluster.nodes[0]
        with trio.CancelScope() as put_scope:

            async def cancel_once_stored() -> None:
                await stalled.wait()
                await trio.testing.wait_all_tasks_blocked()
                assert any(node.parts.store.used_bytes for node in cluster.nodes)
                put_scope.cancel()

            nursery.start_soon(cancel_once_stored)
            await writer.records.put(stalls(), metadata=RecordMetadata())
        assert put_scope.cancelled_caught
        await trio.testing.wait_all_tasks_blocked()
        assert len(writer.ledger.book) == 0
        for node in cluster.nodes:  # every holder was told to drop what it took
            assert node.shards.holdings.records() == []
            assert node.parts.store.used_bytes == 0
        nursery.cancel_scope.cancel()


async def test_a_put_cancelled_while_its_first_segment_is_encoded_ahead_leaves_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer = cluster.nodes[0]
        looking = trio.Event()
        pulled: list[int] = []

        async def upload() -> AsyncIterator[tuple[bytes, bool]]:
            for number in range(3):
                pulled.append(number)
                yield bytes([number]) * SEGMENT, number == 2

        async def stuck_lookup(key: bytes, want: int, *, reuse: bool = False) -> list[Reachable]:
            looking.set()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        writer.records.reach.candidates = stuck_lookup  # type: ignore[method-assign]
        with trio.CancelScope() as put_scope:

            async def cancel_once_encoded() -> None:
                await looking.wait()
                await trio.testing.wait_all_tasks_blocked()  # the first segment encoded
                put_scope.cancel()

            nursery.start_soon(cancel_once_encoded)
            await writer.records.put(upload(), metadata=RecordMetadata())
        assert put_scope.cancelled_caught
        assert pulled == [0]  # one segment read ahead, no more
        await trio.testing.wait_all_tasks_blocked()
        assert len(writer.ledger.book) == 0
        for node in cluster.nodes:  # nothing was sent anywhere
            assert node.shards.holdings.records() == []
            assert node.parts.store.used_bytes == 0
        nursery.cancel_scope.cancel()


async def test_a_failed_placement_after_encoding_ahead_leaves_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 2, small_config())  # fewer than storage.happy
        writer = cluster.nodes[0]
        upload = segments(b"x" * (2 * SEGMENT + 5), SEGMENT)
        with pytest.raises(NetworkTooSmall, match="network too small"):
            await writer.records.put(upload, metadata=RecordMetadata())
        assert len(writer.ledger.book) == 0
        for node in cluster.nodes:
            assert node.shards.holdings.records() == []
            assert node.parts.store.used_bytes == 0
        nursery.cancel_scope.cancel()
