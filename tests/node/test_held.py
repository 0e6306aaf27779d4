"""A small record's get in one round (FetchHeld, node.records.held): honest and adversarial,
on whole nodes over the in-memory transport."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from node.assembly import Node
from node.net.errors import RemoteError
from node.records.service import READ_GRACE
from node.sim.nodes import segments
from protocol.dht.contact import Contact
from protocol.net.messages import ErrorCode, Message
from protocol.records.fetching import UNKNOWN_LATENCY
from protocol.records.held import HELD_MAX_BYTES, first_asks, spare_delay
from protocol.records.messages import FetchHeld, HeldFound
from storage.codec.manifest import RecordMetadata
from storage.store.sqlite import DatabaseBusy
from tests.node.cluster import Cluster, knows_grant, read_all, small_config

Answer = Callable[[Contact, Message, float], Awaitable[Message]]


@asynccontextmanager
async def granted(
    tmp_path: Path, size: int = 100_000
) -> AsyncIterator[tuple[Cluster, bytes, bytes]]:
    """Five nodes; node0 put a record of `size` bytes granted to node1 (which knows it)."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        writer, reader = cluster.nodes[0], cluster.nodes[1]
        data = os.urandom(size)
        result = await writer.records.put(
            segments(data, 64 * 1024), metadata=RecordMetadata(), grantees=[reader.public_key]
        )
        await knows_grant(reader, result.record_id, reader.public_key)
        yield cluster, result.record_id, data
        nursery.cancel_scope.cancel()


def intercept(
    node: Node, answer: Callable[[Contact, Message, Answer], Awaitable[Message]]
) -> Counter[str]:
    """Route every call the node's records make through `answer`; counts them by type."""
    calls: Counter[str] = Counter()
    port = node.records.port
    original = port.call

    async def call(contact: Contact, message: Message, timeout: float) -> Message:
        calls[message.TYPE] += 1
        return await answer(contact, message, original)

    port.call = call  # type: ignore[method-assign]
    return calls


def signed(node: Node, record_id: bytes) -> bytes:
    """A read statement of the node's own for the record."""
    made = node.records.own_permits(record_id)()
    assert made is not None
    return made


async def honest(contact: Contact, message: Message, original: Answer) -> Message:
    return await original(contact, message, 5.0)


async def test_a_small_record_is_read_in_one_round(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        calls = intercept(reader, honest)
        assert await read_all(reader, record_id) == data
        # k asked, and all answered at once: the spare is not asked (its ~350 KB answer
        # would only be read, sealed, sent, opened and dropped).
        assert calls["fetch_held"] == 3
        assert calls["get_holdings"] == 0 and calls["fetch_blocks"] == 0


def first_candidates(reader: Node, record_id: bytes) -> list[Contact]:
    """The candidates a reader asks FetchHeld at once (the spare follows them)."""
    record = reader.records.lookup(record_id)
    return reader.records._known_candidates(record_id)[: first_asks(record.k, record.n)]


async def test_the_get_does_not_wait_for_a_candidate_that_does_not_answer(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Whichever of the first k is silent, the spare is asked once the others are in, and
    the get ends long before the silent one's call would time out."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        asked: list[bytes] = []  # FetchHeld's targets in this get, in the order asked
        silent_at = 0  # the position among them that does not answer

        async def answer(contact: Contact, message: Message, original: Answer) -> Message:
            if isinstance(message, FetchHeld):
                asked.append(contact.public_key)
                if len(asked) == silent_at + 1:  # the first k are asked before any spare
                    await trio.sleep_forever()
            return await original(contact, message, 5.0)

        calls = intercept(reader, answer)
        record = reader.records.lookup(record_id)
        for position in range(first_asks(record.k, record.n)):
            silent_at = position
            asked.clear()
            calls.clear()
            started = trio.current_time()
            assert await read_all(reader, record_id) == data
            assert trio.current_time() - started < READ_GRACE  # k whole indices: done
            assert calls["fetch_held"] == 4  # the silent one and the spare
            assert calls["get_holdings"] == 0 and calls["fetch_blocks"] == 0


async def test_a_first_holder_that_serves_no_index_has_the_spare_asked_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member among the first k that answers with holdings and no blocks (as a refusing
    or lagging holder does) costs the reader no wait for the late timer: the spare is
    asked as soon as that answer is in."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        idle = next(c for c in first_candidates(reader, record_id) if c != reader.contact)
        spare_asked = trio.Event()
        first = {c.public_key for c in first_candidates(reader, record_id)}

        async def answer(contact: Contact, message: Message, original: Answer) -> Message:
            if isinstance(message, FetchHeld) and contact.public_key not in first:
                spare_asked.set()
            if contact.public_key == idle.public_key and isinstance(message, FetchHeld):
                return HeldFound((0, 1, 2, 3, 4), (), None, ())
            if isinstance(message, FetchHeld) and not spare_asked.is_set():
                await spare_asked.wait()  # the honest first ones answer only after it
            return await original(contact, message, 5.0)

        calls = intercept(reader, answer)
        started = trio.current_time()
        assert await read_all(reader, record_id) == data
        assert calls["fetch_held"] == 4
        # Not the late timer (twice an unmeasured node's latency) that asked it.
        assert trio.current_time() - started < spare_delay(-1.0, UNKNOWN_LATENCY)


async def test_first_holders_that_all_serve_nothing_cost_one_spare_and_no_more(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Over-fetch stays bounded when every first answer is useless (a member flooding
    claims, or refusals): k + 1 FetchHeld at most, then GetHoldings and FetchBlocks as
    for an older node."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]

        async def answer(contact: Contact, message: Message, original: Answer) -> Message:
            if isinstance(message, FetchHeld):
                return HeldFound((0, 1, 2, 3, 4), (), None, ())
            return await original(contact, message, 5.0)

        calls = intercept(reader, answer)
        assert await read_all(reader, record_id) == data
        assert calls["fetch_held"] == 4
        assert calls["fetch_blocks"] >= 1


async def test_older_nodes_that_do_not_know_fetch_held_are_read_as_before(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]

        async def answer(contact: Contact, message: Message, original: Answer) -> Message:
            if isinstance(message, FetchHeld):
                raise RemoteError(ErrorCode.UNKNOWN_TYPE, "unknown message type 'fetch_held'")
            return await original(contact, message, 5.0)

        calls = intercept(reader, answer)
        assert await read_all(reader, record_id) == data
        assert calls["get_holdings"] >= 3 and calls["fetch_blocks"] >= 1


async def test_a_member_answering_with_forged_blocks_for_every_index_gains_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member with the network key and a certificate claims every index and serves
    garbage: the reader verifies every block, notes the liar corrupt, and reads the
    record from the honest holders."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        segments_of = reader.records.lookup(record_id)
        assert segments_of.k == 3
        # The liar is the first node other than the reader that it asks (a fixed node was
        # not always among the first asked: node ids are random, and candidates are
        # ordered by measured latency too, which changes between any two gets).
        # The others answer after it, so its index is not in hand already (an index in
        # hand is not checked again, and the liar would not be noted).
        liars: list[bytes] = []
        lied = trio.Event()

        async def answer(contact: Contact, message: Message, original: Answer) -> Message:
            if isinstance(message, FetchHeld) and contact != reader.contact and not liars:
                liars.append(contact.public_key)
            if liars and contact.public_key == liars[0] and isinstance(message, FetchHeld):
                forged = tuple(os.urandom(22_000) for _ in range(2))
                lied.set()
                return HeldFound(tuple(range(5)), (), 0, forged)
            if isinstance(message, FetchHeld):
                await lied.wait()
            return await original(contact, message, 5.0)

        intercept(reader, answer)
        handle = await reader.records.open(record_id)
        assert handle.fetcher.corrupt == {liars[0]: {0}}
        assert all(
            c.public_key != liars[0] for holders in handle.fetcher.holders.values() for c in holders
        )
        key = reader.records.record_key(handle)
        assert b"".join([c async for c in reader.records.plaintext(handle, key)]) == data


async def test_a_holder_serves_one_index_of_a_small_record_only_and_only_to_a_grantee(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Asking FetchHeld again and again (or for a large record) costs a holder at most
    one index of a small record per request; without a grant it serves no block."""
    async with granted(tmp_path, size=5 * HELD_MAX_BYTES) as (cluster, big_id, _):
        reader, stranger = cluster.nodes[1], cluster.nodes[3]
        holder = next(n for n in cluster.nodes if n.shards.holdings.indices(big_id)[0])
        statement = signed(reader, big_id)
        answer = await reader.records.port.call(holder.contact, FetchHeld(big_id, statement), 5.0)
        assert isinstance(answer, HeldFound) and answer.complete
        assert answer.index is None and answer.blocks == ()  # too large: holdings only

        writer = cluster.nodes[0]
        data = os.urandom(100_000)
        result = await writer.records.put(
            segments(data, 64 * 1024), metadata=RecordMetadata(), grantees=[reader.public_key]
        )
        small_id = result.record_id
        await knows_grant(reader, small_id, reader.public_key)
        holder = next(n for n in cluster.nodes if n.shards.holdings.indices(small_id)[0])
        while small_id not in holder.ledger.state().records:
            await holder.ledger.changed()
        statement = signed(reader, small_id)
        for _ in range(20):
            answer = await reader.records.port.call(
                holder.contact, FetchHeld(small_id, statement), 5.0
            )
            assert isinstance(answer, HeldFound) and answer.index is not None
            assert len(answer.blocks) == 2  # one index: one block per segment
            assert sum(len(b or b"") for b in answer.blocks) <= HELD_MAX_BYTES

        # A member that holds no grant signs a statement for itself: holdings, no block.
        own = signed(stranger, small_id)
        answer = await stranger.records.port.call(holder.contact, FetchHeld(small_id, own), 5.0)
        assert isinstance(answer, HeldFound) and answer.index is None and answer.blocks == ()


async def test_holders_witness_a_fetch_held_read_the_readers_node_did_not_log(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Every read leaves a trace (docs/records.md): a reader's node that skips logging
    its statement is witnessed by the holders that served it under FetchHeld, each at
    most once for the read."""
    async with granted(tmp_path) as (cluster, record_id, data):
        writer, reader = cluster.nodes[0], cluster.nodes[1]
        reader.records.log_read = None  # a dishonest reader's node
        calls = intercept(reader, honest)
        assert await read_all(reader, record_id) == data
        assert calls["fetch_blocks"] == 0
        with trio.fail_after(600):
            while not writer.ledger.state().reads_of(record_id):
                await writer.ledger.changed()
        (read,) = writer.ledger.state().reads_of(record_id)
        assert read.reader == reader.public_key
        assert all(node.witness.witnessed <= 1 for node in cluster.nodes)


async def test_a_member_claiming_an_index_past_n_does_not_fail_the_read(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A liar serves "index n" (or a negative one) with blocks of the right length: the
    manifest has no hash for it, so the answer is corrupt, not an IndexError that ends
    the get for everyone (one bad peer never fails a read the honest holders can serve)."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader, liar = cluster.nodes[1], cluster.nodes[2]
        manifest = await reader.records.manifest_of(reader.records.lookup(record_id))
        sizes = [manifest.block_size(s) for s in range(manifest.segment_count)]

        for bad in (manifest.n, -1):

            async def answer(
                contact: Contact, message: Message, original: Answer, bad: int = bad
            ) -> Message:
                if contact.public_key == liar.public_key and isinstance(message, FetchHeld):
                    return HeldFound((bad,), (), bad, tuple(os.urandom(s) for s in sizes))
                return await original(contact, message, 5.0)

            intercept(reader, answer)
            assert await read_all(reader, record_id) == data


async def test_holders_serve_from_the_page_cache_inline_and_from_disk_in_a_worker(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A holder reads a FetchHeld's index on its event loop only when no block of it would
    wait for the disk (ShardStore.get_cached); otherwise the same read runs in a worker
    thread, and the reader gets the same blocks either way."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        tried: Counter[bytes] = Counter()
        for node in cluster.nodes:
            store = node.parts.store

            def never_cached(digest: bytes, key: bytes = node.public_key) -> bytes | None:
                tried[key] += 1
                return None  # as if every block were only on disk

            store.get_cached = never_cached  # type: ignore[method-assign]
        calls = intercept(reader, honest)
        assert await read_all(reader, record_id) == data
        assert calls["fetch_held"] == 3 and calls["fetch_blocks"] == 0
        assert sum(1 for count in tried.values() if count) >= 3  # each holder tried inline
        for node in cluster.nodes:
            del node.parts.store.get_cached  # the class's again
        assert await read_all(reader, record_id) == data


async def test_a_member_claiming_every_index_and_serving_none_does_not_stop_the_read(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member among the first asked claims every index whole and serves its one with a
    block missing (as if lost): its claims are not counted, so they cannot cover k and
    keep the reader from asking the holders that serve; the read succeeds without it."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        liars: list[bytes] = []

        async def answer(contact: Contact, message: Message, original: Answer) -> Message:
            if isinstance(message, FetchHeld) and contact != reader.contact and not liars:
                liars.append(contact.public_key)
            if liars and contact.public_key == liars[0]:
                if isinstance(message, FetchHeld):
                    return HeldFound(tuple(range(5)), (), 0, (None,) * 2)
                raise RemoteError(ErrorCode.UNAVAILABLE, "busy")  # serves nothing else
            return await original(contact, message, 5.0)

        intercept(reader, answer)
        for _ in range(3):
            handle = await reader.records.open(record_id)
            assert all(
                c.public_key != liars[0]
                for holders in handle.fetcher.holders.values()
                for c in holders
            )
            key = reader.records.record_key(handle)
            assert b"".join([c async for c in reader.records.plaintext(handle, key)]) == data
            liars.clear()


async def test_a_holder_whose_holdings_are_busy_reads_in_a_worker_instead_of_waiting(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The inline read asks the holdings without waiting (a worker thread's commit may hold
    them for an fsync): busy, the same read runs in a worker thread and serves the same."""
    async with granted(tmp_path) as (cluster, record_id, data):
        reader = cluster.nodes[1]
        busy: Counter[bool] = Counter()
        for node in cluster.nodes:
            holdings = node.shards.holdings
            real = holdings.first_noted

            def first_noted(
                digests: Iterable[bytes], *, wait: bool = True, real: Any = real
            ) -> dict[bytes, bytes]:
                busy[wait] += 1
                if not wait:
                    raise DatabaseBusy("the holdings database is in use")
                return real(digests)  # type: ignore[no-any-return]

            holdings.first_noted = first_noted  # type: ignore[method-assign]
        calls = intercept(reader, honest)
        assert await read_all(reader, record_id) == data
        assert calls["fetch_held"] == 3 and calls["fetch_blocks"] == 0
        assert busy[False] >= 3 and busy[True] >= 3  # tried inline, then read in a worker
