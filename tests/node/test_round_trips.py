"""Round trips and commits per put and get (issue 17): counted, so they cannot creep back.

A 1 MiB put on five real daemons took ~85 ms against a few ms of CPU work;
the time went to waits (docs/throughput.md). These tests count the waits that
were cut (a reader's DHT lookup, a holder's holdings commits) and the round
trips a put needs, on whole nodes over the in-memory transport.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from node import offload
from node.assembly import Node
from node.dht.service import LookupResult
from node.ledger.service import Prepared
from node.records import put as put_module
from node.records.errors import RecordError
from node.records.reach import Reachable
from node.sim.nodes import segments
from protocol.dht.contact import Contact
from protocol.ids import record_dht_key
from protocol.ledger.entries import Body
from protocol.net.messages import Message
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, knows_grant, read_all, small_config

T = TypeVar("T")


def count_lookups(node: Node) -> list[bytes]:
    """Every find_providers lookup `node` makes from now on (the keys)."""
    keys: list[bytes] = []
    original = node.dht.find_providers

    async def counted(key: bytes) -> LookupResult:
        keys.append(key)
        return await original(key)

    node.dht.find_providers = counted  # type: ignore[method-assign]
    return keys


def count_calls(node: Node) -> Counter[tuple[bytes, str]]:
    """Every RPC the node's records make from now on, by (callee, message type)."""
    calls: Counter[tuple[bytes, str]] = Counter()
    port = node.records.port
    original = port.call

    async def counted(contact: Contact, message: Message, timeout: float) -> Message:
        calls[contact.public_key, message.TYPE] += 1
        return await original(contact, message, timeout)

    port.call = counted  # type: ignore[method-assign]
    return calls


async def test_a_get_makes_no_dht_lookup_when_known_nodes_hold_k_indices(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer, reader = cluster.nodes[0], cluster.nodes[1]
        data = os.urandom(100_000)
        result = await writer.records.put(
            segments(data, 64 * 1024), metadata=RecordMetadata(), grantees=[reader.public_key]
        )
        await knows_grant(reader, result.record_id, reader.public_key)
        lookups = count_lookups(reader)
        assert await read_all(reader, result.record_id) == data
        assert lookups == []  # its routing table knew the holders
        nursery.cancel_scope.cancel()


async def test_one_member_claiming_every_index_does_not_skip_the_lookup(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member with a valid certificate that answers GetHoldings with every index
    (truly holding one) must not make a reader that knows only it skip the DHT."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer, reader, liar = cluster.nodes[0], cluster.nodes[1], cluster.nodes[2]
        data = os.urandom(100_000)
        result = await writer.records.put(
            segments(data, 64 * 1024), metadata=RecordMetadata(), grantees=[reader.public_key]
        )
        await knows_grant(reader, result.record_id, reader.public_key)
        liar.shards.holdings.indices = lambda record_id: (list(range(5)), [])  # type: ignore[method-assign]
        # The reader's routing table, as far as this read goes, holds the liar alone.
        reader.records._known_candidates = lambda record_id: [reader.contact, liar.contact]  # type: ignore[method-assign]
        lookups = count_lookups(reader)
        assert await read_all(reader, result.record_id) == data
        assert len(lookups) == 1  # two nodes claimed k indices: not enough, so it looked up
        nursery.cancel_scope.cancel()


async def test_a_one_segment_put_costs_each_holder_one_call_and_one_commit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """StoreAndProve (blocks, manifest, complete, the storage challenge) per holder,
    nothing more; each holder commits its holdings once (the index's row, its
    blocks and its completion: every block came in that batch)."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(happy=5))
        writer = cluster.nodes[0]
        calls = count_calls(writer)
        commits = {n.public_key: n.shards.holdings.commits for n in cluster.nodes}
        result = await writer.records.put(
            segments(os.urandom(50_000), 64 * 1024), metadata=RecordMetadata()
        )
        holders = set(result.holders.values())
        assert len(holders) == 5
        for holder in holders:
            assert calls[holder, "store_and_prove_v2"] == 1
        records = {
            "store_shards",
            "store_and_prove",
            "store_and_prove_v2",
            "prove_shards",
            "prove_shards_v2",
            "drop_shards",
            "get_holdings",
            "fetch_blocks",
        }
        assert sum(n for (_, kind), n in calls.items() if kind in records) == len(holders)
        for node in cluster.nodes:
            assert node.shards.holdings.commits - commits[node.public_key] == 1
        nursery.cancel_scope.cancel()


async def test_a_multi_batch_index_still_commits_per_batch_and_once_to_complete(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(happy=5, transfer_batch_bytes=30_000))
        writer = cluster.nodes[0]
        commits = {n.public_key: n.shards.holdings.commits for n in cluster.nodes}
        data = os.urandom(180_000)  # three segments, a batch each
        result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
        assert result.verdict.holders == 5
        for node in cluster.nodes:
            assert node.shards.holdings.commits - commits[node.public_key] == 3 + 1
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_holders_announce_a_record_once_their_ledger_has_it_not_during_the_put(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(happy=5))
        writer = cluster.nodes[0]
        announced: dict[bytes, list[bytes]] = {n.public_key: [] for n in cluster.nodes}
        for node in cluster.nodes:
            node.shards.announcements._announce = announced[node.public_key].append
        recorded = writer.records._record
        seen_at_record: list[int] = []

        async def record(*args: object, **kwargs: object) -> None:
            seen_at_record.append(sum(len(keys) for keys in announced.values()))
            await recorded(*args, **kwargs)  # type: ignore[arg-type]

        writer.records._record = record  # type: ignore[method-assign]
        result = await writer.records.put(
            segments(os.urandom(50_000), 64 * 1024), metadata=RecordMetadata()
        )
        assert seen_at_record == [0]  # no lookup competed with the put's proofs
        for node in cluster.nodes:
            while result.record_id not in node.ledger.state().records:
                await node.ledger.changed()
        assert all(keys == [record_dht_key(result.record_id)] for keys in announced.values())
        nursery.cancel_scope.cancel()


async def test_a_put_reads_its_first_segment_while_placement_is_looked_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer = cluster.nodes[0]
        data = os.urandom(150_000)
        pulled: list[int] = []

        async def upload() -> AsyncIterator[tuple[bytes, bool]]:
            async for segment in segments(data, 64 * 1024):
                pulled.append(len(segment[0]))
                yield segment

        candidates = writer.records.reach.candidates
        read_during_lookup: list[list[int]] = []

        async def looked_up(key: bytes, want: int, *, reuse: bool = False) -> list[Reachable]:
            found = await candidates(key, want, reuse=reuse)
            read_during_lookup.append(list(pulled))
            return found

        writer.records.reach.candidates = looked_up  # type: ignore[method-assign]
        result = await writer.records.put(upload(), metadata=RecordMetadata())
        assert read_during_lookup == [[64 * 1024]]  # the first segment, and only it
        assert pulled == [64 * 1024, 64 * 1024, 150_000 - 128 * 1024]
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_bad_upload_found_during_placement_fails_as_itself(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer = cluster.nodes[0]

        async def broken() -> AsyncIterator[tuple[bytes, bool]]:
            for _ in ():
                yield b"", True
            raise RecordError("the upload ended before its last chunk; nothing was stored")

        with pytest.raises(RecordError, match="ended before its last chunk"):
            await writer.records.put(broken(), metadata=RecordMetadata())
        assert len(writer.ledger.book) == 0
        nursery.cancel_scope.cancel()


async def test_a_put_encodes_its_first_segment_while_placement_is_looked_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer = cluster.nodes[0]
        data = os.urandom(150_000)
        encoded = trio.Event()
        real = offload.in_worker

        async def in_worker(fn: Callable[..., T], *args: Any) -> T:
            result = await real(fn, *args)
            if fn is put_module._encode:
                encoded.set()
            return result

        monkeypatch.setattr(put_module, "in_worker", in_worker)
        candidates = writer.records.reach.candidates

        async def looked_up(key: bytes, want: int, *, reuse: bool = False) -> list[Reachable]:
            found = await candidates(key, want, reuse=reuse)
            with trio.fail_after(60):  # the lookup waits: only an encode beside it ends this
                await encoded.wait()
            return found

        writer.records.reach.candidates = looked_up  # type: ignore[method-assign]
        result = await writer.records.put(
            segments(data, 64 * 1024),
            metadata=RecordMetadata(),
            grantees=[cluster.nodes[1].public_key],
        )
        assert await read_all(writer, result.record_id) == data
        nursery.cancel_scope.cancel()


async def test_a_puts_entries_are_signed_before_the_verdict_and_a_refused_put_writes_none(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        for index in range(5):  # exactly n nodes, one of them full: a full put is refused
            await cluster.add(nursery, small_config(quota_bytes=1024 if index == 4 else 0))
        writer = cluster.nodes[0]
        prepare_all = writer.ledger.prepare_all
        prepared: list[Prepared] = []
        recorded_when_prepared: list[bool] = []

        def preparing(bodies: Sequence[Body], signer: object = None) -> Prepared:
            recorded_when_prepared.append(bodies[0].record_id in writer.ledger.state().records)
            prepared.append(prepare_all(bodies))
            return prepared[-1]

        writer.ledger.prepare_all = preparing  # type: ignore[method-assign]
        result = await writer.records.put(
            segments(os.urandom(100_000), 64 * 1024), metadata=RecordMetadata()
        )
        assert recorded_when_prepared == [False]  # signed before the commit, used by it
        recorded = [e for e in writer.ledger.book.entries() if e.record_id == result.record_id]
        assert sorted(e.raw for e in recorded) == sorted(e.raw for e in prepared[0].entries)

        entries = len(writer.ledger.book)
        with pytest.raises(RecordError, match="nothing was recorded"):
            await writer.records.put(
                segments(os.urandom(100_000), 64 * 1024),
                metadata=RecordMetadata(),
                require_full=True,
            )
        assert len(prepared) == 2  # signed ahead, then dropped with the put
        assert len(writer.ledger.book) == entries
        raws = {e.raw for e in writer.ledger.book.entries()}
        assert raws.isdisjoint(e.raw for e in prepared[1].entries)
        nursery.cancel_scope.cancel()
