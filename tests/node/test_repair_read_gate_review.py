"""Review of the repair-read gate (c09b953): what one holder, colluding with a revoked
grantee, still gets from the other holders of a healthy record, and what a holder
gains by answering audits with the new `not_needed` refusal.

Each test states the property the change meant to give; they were xfail(strict) until
the fixes (audits by permit only, a need counted only while fresh) made them pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing
import trio

from node.assembly import Node
from node.net.errors import RemoteError, RequestError
from node.sim.nodes import segments
from protocol.ledger.entries import GrantBody
from protocol.net.messages import ErrorCode
from protocol.records.holder_proof import bucket_of
from protocol.records.messages import BlockRef, BlocksFound, FetchBlocks, GetHoldings
from storage.codec.crypt import open_sealed_key
from storage.codec.decoder import RecordDecoder
from storage.codec.manifest import Manifest, RecordMetadata
from storage.errors import NotEnoughShards
from tests.node.cluster import Cluster, holders_of, small_config

DATA = os.urandom(150_000)  # three segments of 64 KiB


async def stored(cluster: Cluster, nursery: trio.Nursery, count: int = 7) -> tuple[Node, bytes]:
    await cluster.add_many(nursery, count, small_config())
    owner = cluster.nodes[0]
    result = await owner.records.put(segments(DATA, 64 * 1024), metadata=RecordMetadata())
    for node in cluster.nodes:
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    return owner, result.record_id


async def revoked_grant(
    cluster: Cluster, owner: Node, record_id: bytes, grantee: bytes
) -> GrantBody:
    """Grant the record to `grantee`, revoke it, and wait until every ledger has both."""
    entry = await owner.records.grant(record_id, grantee)
    assert isinstance(entry.body, GrantBody)
    for node in cluster.nodes:
        while node.ledger.state().grant_for(record_id, grantee, node.clock_ms()) is None:
            await node.ledger.changed()
    await owner.records.revoke(record_id, grantee)
    for node in cluster.nodes:
        while not node.ledger.state().grant_ended(record_id, grantee, node.clock_ms()):
            await node.ledger.changed()
    return entry.body


async def index_read(
    asker: Node, holder: Node, manifest: Manifest, refs: tuple[BlockRef, ...]
) -> BlocksFound | str:
    """A FetchBlocks with the asker's holder proof: the answer, or the refusal's code."""
    proof = await asker.shards.holder_proof(
        manifest, holder.public_key, bucket_of(asker.clock_ms())
    )
    assert proof is not None
    try:
        answer = await asker.port.call(
            holder.contact, FetchBlocks(manifest.record_id, refs, None, proof), 5.0
        )
    except RemoteError as exc:
        return exc.code
    assert isinstance(answer, BlocksFound)
    return answer


async def test_a_holder_and_a_revoked_grantee_do_not_read_a_healthy_record_by_audit_reads(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        clinician = nacl.signing.SigningKey(os.urandom(32))
        grant = await revoked_grant(cluster, owner, record_id, bytes(clinician.verify_key))
        holders = holders_of(cluster, record_id)
        colluder = next(n for n in holders if n is not owner)
        others = [n for n in holders if n is not colluder]
        manifest = colluder.shards.manifest(record_id)
        assert manifest is not None
        for holder in others:  # every other holder's own survey: healthy
            assert (await holder.repairer.survey(record_id, verify=False)).health.healthy
        own = colluder.shards.holdings.indices(record_id)[0][0]
        blocks: dict[tuple[int, int], bytes] = {}
        for segment in range(manifest.segment_count):
            blocks[segment, own] = colluder.shards.store.get(manifest.block_hash(segment, own))
        started = trio.current_time()
        period = owner.parts.config.storage.repair_interval / 2
        k, count = manifest.k, manifest.segment_count

        def short(segment: int) -> bool:
            return sum(1 for s, _ in blocks if s == segment) < k

        for turn in range(2 * count + 2):  # one audit's share per holder and period
            if turn:
                await trio.sleep(period)
            for holder in others:
                index = holder.shards.holdings.indices(record_id)[0][0]
                wanted = [s for s in range(count) if short(s) and (s, index) not in blocks]
                if not wanted:
                    continue
                answer = await index_read(colluder, holder, manifest, (BlockRef(wanted[0], index),))
                if isinstance(answer, BlocksFound) and answer.blocks[0] is not None:
                    blocks[wanted[0], index] = answer.blocks[0]
            if not any(short(s) for s in range(count)):
                break
        for holder in others:  # the record stayed healthy all along
            seen = holder.views.seen(record_id)
            assert seen is not None and seen.healthy
        # The revoked grantee opens its old sealed key and decodes what was collected.
        key = open_sealed_key(grant.sealed_key, clinician)
        decoder = RecordDecoder(manifest, key)
        try:
            plain = b"".join(
                decoder.decode_segment(s, lambda seg, i: blocks.get((seg, i)))
                for s in range(manifest.segment_count)
            )
        except NotEnoughShards:  # too few blocks: the wanted outcome
            plain = b""
        elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert plain != DATA, f"read whole while healthy, in {elapsed:.0f} s"


async def test_a_holder_whose_grant_ended_does_not_serve_a_healthy_record_whole(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        holders = [n for n in holders_of(cluster, record_id) if n is not owner]
        colluder, server = holders[0], holders[1]
        # The serving holder's node was granted the record once (a grant that expired
        # does the same), and its audits now run as any holder's do.
        await revoked_grant(cluster, owner, record_id, server.public_key)
        await server.repairer.check(record_id)  # a pass that audits, or an operator
        manifest = server.shards.manifest(record_id)
        assert manifest is not None
        index = server.shards.holdings.indices(record_id)[0][0]
        whole = tuple(BlockRef(s, index) for s in range(manifest.segment_count))
        answer = await index_read(colluder, server, manifest, whole)
        seen = server.views.seen(record_id)
        assert seen is not None
        # The record is healthy (every holder still holds its index) and the colluder is
        # refused. Found in review: the server counted every holder's refusal of its
        # audit (no_grant) as unproven, saw the record unreadable and served it whole.
        served = isinstance(answer, BlocksFound) and all(answer.blocks)
        assert not served, f"served whole: seen with {len(seen.held)} of {seen.n} indices"
        assert seen.healthy and answer == ErrorCode.NOT_NEEDED
        nursery.cancel_scope.cancel()


async def test_a_holder_refusing_audits_is_not_counted_and_other_holders_cannot_audit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Review of c09b953, finding 2: a holder that keeps nothing answered holders' audits
    with not_needed and still counted. Audits are by permit now: the owner's node reads
    by permit, which honest holders always serve, so a refusal does not count; a holder
    cannot audit at all (a proof buys no blocks of a healthy record) and says so."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        holders = [n for n in holders_of(cluster, record_id) if n is not owner]
        liar, other = holders[0], holders[1]

        async def not_needed(*args: object) -> None:
            raise RequestError(ErrorCode.NOT_NEEDED, "needs no repair as I saw it")

        liar.shards.gate.admit = not_needed  # type: ignore[method-assign,assignment]
        by_owner = await owner.repairer.survey(record_id, verify=False, audit=True)
        assert liar.public_key not in by_owner.health.holders
        assert not by_owner.health.healthy and by_owner.audited_bytes > 0
        by_holder = await other.repairer.survey(record_id, verify=False, audit=True)
        assert by_holder.audited_bytes == 0 and not by_holder.failed_audit
        assert by_holder.health.unaudited == by_holder.health.holders  # nothing proven
        nursery.cancel_scope.cancel()


async def test_one_missed_holdings_answer_does_not_open_a_healthy_record_for_long(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        owner, record_id = await stored(cluster, nursery)
        holders = [n for n in holders_of(cluster, record_id) if n is not owner]
        colluder, server, blinking = holders[0], holders[1], holders[2]
        manifest = server.shards.manifest(record_id)
        assert manifest is not None
        index = server.shards.holdings.indices(record_id)[0][0]
        whole = tuple(BlockRef(s, index) for s in range(manifest.segment_count))
        honest = blinking.dispatcher._routes[GetHoldings]

        async def lost(*args: object) -> None:
            raise RequestError(ErrorCode.UNAVAILABLE, "restarting")

        blinking.dispatcher._routes[GetHoldings] = lost  # type: ignore[assignment]
        # The colluder's refused read makes the server survey now, in the background.
        assert await index_read(colluder, server, manifest, whole) == ErrorCode.NOT_NEEDED
        for _ in range(100):  # upkeep surveys in the background (autojump clock)
            if server.views.seen(record_id) is not None:
                break
            await trio.sleep(1)
        seen = server.views.seen(record_id)
        assert seen is not None and not seen.healthy
        blinking.dispatcher._routes[GetHoldings] = honest  # back at once
        await trio.sleep(120)  # well within the server's repair interval
        answer = await index_read(colluder, server, manifest, whole)
        served = isinstance(answer, BlocksFound) and all(answer.blocks)
        nursery.cancel_scope.cancel()
    assert not served, "a healthy record served whole on one missed answer, minutes later"
