"""StoreAndProve: an index sent in one batch carries its storage challenge (issue 17).

Honest: one call per holder instead of StoreShards then ProveShards; a
multi-batch index keeps the separate proof round; proofs are version 2
(keyed BLAKE3) between current nodes; an older holder (it answers
UNKNOWN_TYPE) gets the messages it knows, and is not sent a refused batch
again. Adversarial: made-up or wrong proofs are not believed, a challenge
naming blocks the batch did not carry gets no proof of them, a malformed
challenge stores nothing, and a flood costs the sender its pending cap.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from node.assembly import Node
from node.net.errors import RemoteError, RequestError
from node.net.rpc_port import Caller
from node.records.transfer import (
    NO_STORE_AND_PROVE,
    PROVES_V1,
    PROVES_V2,
    REPROBE_AFTER,
    HolderAbilities,
    abilities,
)
from node.sim.adversary import lie_on
from node.sim.nodes import segments
from protocol.ledger.entries import derive_record_id
from protocol.net.messages import ErrorCode, Message
from protocol.records.messages import (
    ProveShardsV2,
    ShardsStoredProven,
    StoreAndProve,
    StoreAndProveV2,
)
from protocol.records.proofs import PROOF_V1, PROOF_V2, block_proof
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, read_all, small_config
from tests.node.test_round_trips import count_calls


def one_segment_record(owner: Node, size: int = 1000) -> tuple[bytes, bytes, bytes, list[bytes]]:
    """(record id, owner nonce, manifest, index 0's block of segment 0) of a fresh record."""
    nonce = os.urandom(16)
    record_id = derive_record_id(owner.public_key, nonce)
    encoder = RecordEncoder(
        record_id=record_id, record_key=os.urandom(32), k=2, n=3, segment_size=64 * 1024
    )
    encoded = list(encoder.encode(io.BytesIO(os.urandom(size))))
    return record_id, nonce, encoder.manifest().encode(), [bytes(encoded[0].blocks[0])]


async def test_one_batch_indices_are_proven_in_the_store_call_and_others_apart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 5, small_config(happy=5))
        writer = cluster.nodes[0]
        calls = count_calls(writer)
        small = os.urandom(50_000)
        result = await writer.records.put(segments(small, 64 * 1024), metadata=RecordMetadata())
        assert result.verdict.holders == 5
        shard_calls = {kind for _, kind in calls} & {
            "store_and_prove",
            "store_and_prove_v2",
            "store_shards",
            "prove_shards",
            "prove_shards_v2",
        }
        assert shard_calls == {"store_and_prove_v2"}
        assert all(abilities.of(n.public_key) == PROVES_V2 for n in cluster.nodes[1:])
        calls.clear()
        # Three segments, a batch each: the proof after.
        writer.records.config = replace(writer.records.config, transfer_batch_bytes=30_000)
        large = os.urandom(180_000)
        big = await writer.records.put(segments(large, 64 * 1024), metadata=RecordMetadata())
        assert big.verdict.holders == 5
        kinds = Counter(kind for (_, kind) in calls.elements())
        assert kinds["store_and_prove"] == kinds["store_and_prove_v2"] == 0
        assert kinds["prove_shards_v2"] == 5 and kinds["store_shards"] >= 10
        assert kinds["prove_shards"] == 0
        assert await read_all(writer, result.record_id) == small
        assert await read_all(writer, big.record_id) == large
        nursery.cancel_scope.cancel()


async def unknown(message: Message, caller: Caller) -> Message:
    # What an older node's connection answers a type it cannot decode.
    raise RequestError(ErrorCode.UNKNOWN_TYPE, "unknown message type")


async def test_an_older_holder_gets_store_then_prove_and_no_refused_batch_again(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A node from before StoreAndProve knows neither challenge of version 2 nor
    StoreAndProve: the first put learns that (and still places an index there), the
    next sends it only what it knows."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 5, small_config(happy=5))
        writer, old = cluster.nodes[0], cluster.nodes[3]
        for kind in (StoreAndProve, StoreAndProveV2, ProveShardsV2):
            old.dispatcher._routes[kind] = unknown
        abilities.forget(old.public_key)
        calls = count_calls(writer)
        try:
            for _ in range(2):
                result = await writer.records.put(
                    segments(os.urandom(50_000), 64 * 1024), metadata=RecordMetadata()
                )
                assert result.verdict.holders == 5 and old.public_key in result.holders.values()
            assert abilities.of(old.public_key) == NO_STORE_AND_PROVE
        finally:  # the process-wide memory of holders: other tests' keys repeat
            abilities.forget(old.public_key)
        # the first put only: each refused once (then known older than version 2 too)
        assert calls[old.public_key, "store_and_prove_v2"] == 1
        assert calls[old.public_key, "store_and_prove"] == 1
        assert calls[old.public_key, "prove_shards_v2"] == 0
        assert calls[old.public_key, "store_shards"] == 2
        assert calls[old.public_key, "prove_shards"] == 2
        others = [n.public_key for n in cluster.nodes[1:] if n is not old]
        assert all(
            calls[key, "prove_shards"] == calls[key, "prove_shards_v2"] == 0 for key in others
        )
        assert all(calls[key, "store_and_prove_v2"] == 2 for key in others)
        nursery.cancel_scope.cancel()


async def test_a_holder_without_version_2_proves_in_version_1(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A node with StoreAndProve but not version 2 (the release before). Not yet known,
    its sample is hashed in both versions: its version 1 answer counts at once, after
    one refused version 2 call (a StoreAndProveV2, or a ProveShardsV2 after a record sent
    in several batches); later puts ask version 1 only and hash only version 1 for it."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 5, small_config(happy=5))
        writer, old = cluster.nodes[0], cluster.nodes[2]
        for kind in (StoreAndProveV2, ProveShardsV2):
            old.dispatcher._routes[kind] = unknown
        config = writer.records.config
        try:
            for batch_bytes, size in ((30_000, 180_000), (config.transfer_batch_bytes, 50_000)):
                abilities.forget(old.public_key)
                calls = count_calls(writer)
                for _ in range(2):
                    data = os.urandom(size)
                    writer.records.config = replace(config, transfer_batch_bytes=batch_bytes)
                    result = await writer.records.put(
                        segments(data, 64 * 1024), metadata=RecordMetadata()
                    )
                    assert result.verdict.holders == 5
                    assert old.public_key in result.holders.values()
                    assert await read_all(writer, result.record_id) == data
                assert abilities.of(old.public_key) == PROVES_V1
                assert abilities.proof_versions(old.public_key) == (PROOF_V1,)
                refused = (
                    calls[old.public_key, "store_and_prove_v2"]
                    + calls[old.public_key, "prove_shards_v2"]
                )
                assert refused == 1  # the first put only
                if size > batch_bytes:  # several batches: the proof apart, version 1
                    assert calls[old.public_key, "prove_shards"] == 2
                else:
                    assert calls[old.public_key, "store_and_prove"] == 2
                    assert calls[old.public_key, "store_shards"] == 0
        finally:
            abilities.forget(old.public_key)
            writer.records.config = config
        nursery.cancel_scope.cancel()


async def test_a_member_refusing_version_2_still_has_to_prove(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member that claims not to know version 2 (to be asked the older challenge) and
    keeps nothing: its made-up version 1 proofs fail like any others."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 7, small_config())
        writer, liar = cluster.nodes[0], cluster.nodes[1]
        lie_on(liar, "fake-storage")
        for kind in (StoreAndProveV2, ProveShardsV2):
            liar.dispatcher._routes[kind] = unknown
        abilities.forget(liar.public_key)
        try:
            asked = 0
            for _ in range(4):
                calls = count_calls(writer)
                data = os.urandom(50_000)
                result = await writer.records.put(
                    segments(data, 64 * 1024), metadata=RecordMetadata()
                )
                assert liar.public_key not in set(result.holders.values())
                asked += calls[liar.public_key, "store_and_prove"]
                assert await read_all(writer, result.record_id) == data
            assert asked >= 1
            assert writer.records.reach.distrusted(liar.public_key)
        finally:
            abilities.forget(liar.public_key)
        nursery.cancel_scope.cancel()


async def test_made_up_or_wrong_proofs_in_the_answer_are_not_believed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member keeping nothing answers with made-up proofs; another proves under its
    own nonce (what it would precompute): neither counts, the put goes elsewhere."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 7, small_config())
        writer, liar, wrong = cluster.nodes[0], cluster.nodes[1], cluster.nodes[2]
        lie_on(liar, "fake-storage")
        honest_proofs = wrong.shards.intake._batch_proofs

        def other_nonce(
            message: object, nonce: bytes, segments: tuple[int, ...], version: int
        ) -> object:
            return honest_proofs(message, os.urandom(32), segments, version)  # type: ignore[arg-type]

        wrong.shards.intake._batch_proofs = other_nonce  # type: ignore[method-assign,assignment]
        cheats = {liar.public_key, wrong.public_key}
        asked = 0
        for _ in range(4):
            calls = count_calls(writer)
            data = os.urandom(50_000)
            result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
            assert not cheats & set(result.holders.values())
            assert result.verdict.holders >= 4
            asked += sum(calls[key, "store_and_prove_v2"] for key in cheats)
            assert await read_all(writer, result.record_id) == data
        assert asked >= 1  # the cheats were asked and answered, and were not believed
        assert writer.records.reach.distrusted(liar.public_key) or writer.records.reach.distrusted(
            wrong.public_key
        )
        nursery.cancel_scope.cancel()


async def test_a_challenge_gets_proofs_only_of_blocks_in_its_batch(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Segments the batch did not carry get None (no disk read on a challenge's account);
    a malformed challenge is refused before anything is stored."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 3, small_config())
        owner, holder = cluster.nodes[0], cluster.nodes[1]
        record_id, nonce, manifest, blocks = one_segment_record(owner)
        challenge = os.urandom(32)
        used = holder.parts.store.used_bytes
        for bad_nonce, named in ((os.urandom(31), (0,)), (challenge, (0, 0)), (challenge, ())):
            bad = StoreAndProve(record_id, manifest, 0, 0, tuple(blocks), nonce, bad_nonce, named)
            with pytest.raises(RemoteError) as refused:
                await owner.port.call(holder.contact, bad, 5.0)
            assert refused.value.code == ErrorCode.BAD_REQUEST
        assert holder.parts.store.used_bytes == used
        assert not holder.shards.holdings.records()
        ask = StoreAndProve(record_id, manifest, 0, 0, tuple(blocks), nonce, challenge, (0, 1, 9))
        reply = await owner.port.call(holder.contact, ask, 5.0)
        assert isinstance(reply, ShardsStoredProven) and reply.complete
        assert reply.proofs == (block_proof(challenge, blocks[0], PROOF_V1), None, None)
        # The same challenge in version 2 (the batch again, already held): keyed BLAKE3.
        ask2 = StoreAndProveV2(
            record_id, manifest, 0, 0, tuple(blocks), nonce, challenge, (0, 1, 9)
        )
        reply2 = await owner.port.call(holder.contact, ask2, 5.0)
        assert isinstance(reply2, ShardsStoredProven) and reply2.complete
        assert reply2.proofs == (block_proof(challenge, blocks[0], PROOF_V2), None, None)
        assert reply2.proofs != reply.proofs
        nursery.cancel_scope.cancel()


async def test_a_flood_of_challenges_stores_nothing_twice_and_hits_the_pending_cap(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member with the network key sending StoreAndProve a thousand times: a record it
    does not own is refused outright; its own records cost it its pending-bytes cap,
    and each answer costs at most one hash per block it sent."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 3, small_config(pending_bytes_per_writer=200_000))
        member, holder, victim = cluster.nodes[0], cluster.nodes[1], cluster.nodes[2]
        stolen, _, manifest, blocks = one_segment_record(victim)
        theft = StoreAndProve(
            stolen, manifest, 0, 0, tuple(blocks), os.urandom(16), os.urandom(32), (0,)
        )
        for _ in range(50):
            with pytest.raises(RemoteError, match="owner"):
                await member.port.call(holder.contact, theft, 5.0)
        refused = 0
        for _ in range(1000):
            record_id, nonce, manifest, blocks = one_segment_record(member, size=20_000)
            own = StoreAndProve(
                record_id, manifest, 0, 0, tuple(blocks), nonce, os.urandom(32), (0,)
            )
            try:
                await member.port.call(holder.contact, own, 5.0)
            except RemoteError as exc:
                assert exc.code == ErrorCode.UNAVAILABLE and "pending bytes cap" in exc.detail
                refused += 1
        assert refused > 900
        assert holder.shards.pending.of(member.public_key) <= 200_000
        assert stolen not in holder.shards.holdings.records()
        nursery.cancel_scope.cancel()


async def test_a_whole_index_batch_with_one_lying_block_stores_none_of_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A member sends its own record's whole index in one batch (StoreAndProve or a
    completing StoreShards), the last block garbage: refused, and the blocks before it
    are not left on disk with no holdings row (uncharged, never collected), however
    often it repeats that."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path)
        await cluster.add_many(nursery, 2, small_config())
        member, holder = cluster.nodes[0], cluster.nodes[1]
        used = holder.parts.store.used_bytes
        for _ in range(5):
            nonce = os.urandom(16)
            record_id = derive_record_id(member.public_key, nonce)
            encoder = RecordEncoder(
                record_id=record_id, record_key=os.urandom(32), k=2, n=3, segment_size=64 * 1024
            )
            encoded = list(encoder.encode(io.BytesIO(os.urandom(100_000))))
            assert len(encoded) == 2
            blocks = [bytes(encoded[0].blocks[0]), os.urandom(len(encoded[1].blocks[0]))]
            manifest = encoder.manifest().encode()
            lying = StoreAndProve(
                record_id, manifest, 0, 0, tuple(blocks), nonce, os.urandom(32), (0, 1)
            )
            with pytest.raises(RemoteError) as refused:
                await member.port.call(holder.contact, lying, 5.0)
            assert refused.value.code == ErrorCode.BAD_REQUEST
        assert holder.parts.store.used_bytes == used
        assert not holder.shards.holdings.records()
        nursery.cancel_scope.cancel()


def test_what_a_holder_lacked_is_asked_again_after_a_while() -> None:
    """A holder noted as older is asked the newer messages again after REPROBE_AFTER (it
    may have been upgraded); one known to answer version 2 stays known; the memory is
    bounded."""
    now = [0.0]
    known = HolderAbilities(limit=3, clock=lambda: now[0])
    old, new = b"o" * 32, b"n" * 32
    known.note(old, PROVES_V1)
    known.note(new, PROVES_V2)
    assert known.proof_versions(old) == (PROOF_V1,)
    now[0] = REPROBE_AFTER - 1
    assert known.of(old) == PROVES_V1
    now[0] = REPROBE_AFTER + 1
    assert known.of(old) is None and known.proof_versions(old) == (PROOF_V2, PROOF_V1)
    assert known.of(new) == PROVES_V2
    for key in (b"a" * 32, b"b" * 32, b"c" * 32):
        known.note(key, NO_STORE_AND_PROVE)
    assert known.of(new) is None  # the oldest noted went first
