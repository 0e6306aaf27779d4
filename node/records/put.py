"""The writer's side of a put: stream, top up, judge, and leave nothing behind on failure.

Shard index i goes to the i-th node of a site- and space-aware placement
over the reachable nodes closest to the record's key; each holder gets its
blocks streamed as the record is encoded. Holders that refuse (full), die
or stall are then replaced: while at least k indices are held, the missing
ones are rebuilt from those holders onto the next candidates (nodes holding
nothing of the record first, other sites first), for a few rounds. The
verdict (protocol.records.verdict) says whether the put may be recorded and
whether it is degraded. A put that fails, or is interrupted (the client
hangs up, the daemon is stopped), asks every node it sent blocks to to drop
them (DropShards), bounded in time and shielded from the cancellation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from node.config.storage import StorageConfig
from node.logs import event, get_logger
from node.net.errors import PeerClosed, RpcError
from node.net.rpc_port import RpcPort
from node.offload import in_worker
from node.records.errors import BAD_REQUEST, TOO_FEW_HOLDERS, RecordError, short
from node.records.fetch import Permit
from node.records.reach import Reachable
from node.records.rebuild import rebuild_onto
from node.records.stages import single_failure
from node.records.transfer import HolderSender, send_to_holders
from protocol.dht.contact import Contact
from protocol.records.fetching import Latency
from protocol.records.health import RecordHealth
from protocol.records.messages import DropShards, HoldingsFound
from protocol.records.placement import add_holders
from protocol.records.verdict import PutVerdict
from protocol.text import counted
from storage.codec.encoder import RecordEncoder, SegmentJob
from storage.codec.erasure import BytesLike
from storage.codec.manifest import Manifest
from storage.codec.padme import padme
from storage.codec.segment import EncodedSegment
from storage.errors import ManifestError

log = get_logger("records")
T = TypeVar("T")
ENCODE_WORKERS = 2  # segments encoded at once (hashing and crypto release the GIL)
TOP_UP_ROUNDS = 3  # rounds of replacing holders that failed
DROP_TIMEOUT = 5.0  # seconds a failed put spends telling holders to drop its blocks


@dataclass(frozen=True)
class PutResult:
    record_id: bytes
    manifest: Manifest
    holders: dict[int, bytes]  # index -> the node that confirmed it
    verdict: PutVerdict
    size: int  # the record's own bytes (the manifest's size is padded)


def shard_bytes(size: int, k: int) -> int:
    """About what one shard index of a record of `size` bytes takes on its holder
    (records are stored padded to their Padmé size)."""
    return math.ceil(padme(size) / k)


@dataclass
class Ahead:
    """What a put read and encoded while its placement ran (see encode_ahead_while)."""

    encoded: list[EncodedSegment] = field(default_factory=list)  # in order, not yet accepted
    jobs: list[SegmentJob] = field(default_factory=list)  # claimed after them, not encoded
    rest: AsyncIterator[tuple[bytes, bool]] | None = None  # the upload's further segments


async def encode_ahead_while(
    encoder: RecordEncoder, segments: AsyncIterator[tuple[bytes, bool]], work: Awaitable[T]
) -> tuple[Ahead, T]:
    """Await `work` (the placement lookup, mostly waiting on the network) while the
    upload's first segment is read, claimed and encoded: the encoder needs no holders.

    One segment at most is encoded ahead, which the pipeline then holds as its
    first item, so a large record's bytes in flight stay bounded as before.
    Nothing is sent here: a failed placement leaves nothing behind.
    """
    ahead = Ahead(rest=segments)

    async def first() -> None:
        async for plaintext, last in segments:
            jobs = _claim(encoder, plaintext, last)
            ahead.jobs = list(jobs[1:])  # a last segment's padding segments: the pipeline's
            if last:
                ahead.rest = None
            ahead.encoded.append(await in_worker(_encode, encoder, jobs[0]))
            return
        raise RecordError("the upload ended before its last segment", reason=BAD_REQUEST)

    results: list[T] = []

    async def placement() -> None:
        results.append(await work)

    with single_failure():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(placement)
            await first()  # here, not in a task: its read is under way before the lookup
    return ahead, results[0]


def _claim(encoder: RecordEncoder, plaintext: bytes, last: bool) -> tuple[SegmentJob, ...]:
    try:
        return encoder.claim(plaintext, last)
    except (ValueError, ManifestError) as exc:
        raise RecordError(f"cannot encode the record: {exc}", reason=BAD_REQUEST) from None


def _encode(encoder: RecordEncoder, job: SegmentJob) -> EncodedSegment:
    try:
        return encoder.encode_job(job)
    except (ValueError, ManifestError) as exc:
        raise RecordError(f"cannot encode the record: {exc}", reason=BAD_REQUEST) from None


async def stream_segments(
    encoder: RecordEncoder,
    ahead: Ahead,
    senders: list[HolderSender],
    answered: trio.Event | None = None,
) -> None:
    """Send what was encoded ahead, then read, encode and send the other segments
    as a pipeline; every holder then completes. `answered` is set once the first
    holder has answered its last batch."""
    rest = ahead.rest

    async def claimed() -> AsyncIterator[SegmentJob]:
        for job in ahead.jobs:
            yield job
        if rest is None:
            return
        async for plaintext, last in rest:
            for job in _claim(encoder, plaintext, last):  # the last one brings its padding
                yield job
            if last:
                return
        raise RecordError("the upload ended before its last segment", reason=BAD_REQUEST)

    def accepted(segment: EncodedSegment) -> Sequence[BytesLike]:
        return encoder.accept(segment).blocks

    try:
        await send_to_holders(
            senders,
            encoder.manifest,
            claimed() if ahead.jobs or rest is not None else None,
            encoder.encode_job,
            accepted,
            workers=ENCODE_WORKERS,
            ready=ahead.encoded,
            answered=answered,
        )
    except (ValueError, ManifestError) as exc:
        raise RecordError(f"cannot encode the record: {exc}", reason=BAD_REQUEST) from None


async def stream_and_prepare(
    encoder: RecordEncoder,
    ahead: Ahead,
    senders: list[HolderSender],
    prepare: Callable[[Manifest], T],
) -> T | None:
    """`stream_segments`, with `prepare(manifest)` run once the first holder has
    answered (the sends are out; the others are still storing), or at the end if
    they answer together; its result. Run on the event loop, not in a worker: a
    worker thread holding the GIL while the loop hands the blocks to the sealing
    threads delays every send. A failure of the stream is raised as itself."""
    answered = trio.Event()
    results: list[T] = []

    async def prepared() -> None:
        await answered.wait()
        if encoder.done:
            results.append(prepare(encoder.manifest()))

    with single_failure():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(prepared)
            await stream_segments(encoder, ahead, senders, answered)
            answered.set()  # every holder answered: prepare now if not yet done
    return results[0] if results else None


async def top_up(
    *,
    port: RpcPort,
    permit: Permit,
    config: StorageConfig,
    latency: Latency,
    manifest: Manifest,
    holders: Mapping[int, Contact],
    pool: Sequence[Reachable],
    excluded: set[bytes],
    sent_to: dict[bytes, Contact],
    need: int,
    random_bytes: Callable[[int], bytes],
    owner_nonce: bytes,
) -> dict[int, Contact]:
    """Rebuild the missing indices onto further candidates; the holders afterwards.

    `excluded`: nodes that failed (not asked again; grows). `sent_to`: every
    node blocks went to (grows: a failed put drops them all).
    """
    placed = dict(holders)
    sites = {r.contact.public_key: r.site for r in pool}
    contacts = {r.contact.public_key: r.contact for r in pool}
    for _ in range(TOP_UP_ROUNDS):
        missing = [i for i in range(manifest.n) if i not in placed]
        candidates = [r.candidate() for r in pool if r.contact.public_key not in excluded]
        if not missing or len(placed) < manifest.k or not candidates:
            break
        held: dict[bytes, list[int]] = {}
        for index, contact in placed.items():
            held.setdefault(contact.public_key, []).append(index)
        targets = {
            index: contacts[node]
            for index, node in add_holders(missing, candidates, held, sites, need).items()
        }
        sent_to.update({c.public_key: c for c in targets.values()})
        try:
            senders = await rebuild_onto(
                port=port,
                permit=permit,
                config=config,
                latency=latency,
                manifest=manifest,
                sources={index: [contact] for index, contact in placed.items()},
                targets=list(targets.items()),
                random_bytes=random_bytes,
                owner_nonce=owner_nonce,
            )
        except RecordError as exc:
            event(log, logging.WARNING, "top-up failed", reason=str(exc))
            break
        for sender in senders:
            if sender.confirmed:
                placed.update(dict.fromkeys(sender.indices, sender.holder))
            else:
                excluded.add(sender.holder.public_key)
    return placed


def refuse_unless_kept(
    verdict: PutVerdict, *, wanted: int, require_full: bool, senders: Sequence[HolderSender]
) -> None:
    """RecordError (nothing will be recorded) unless the put kept its promise."""
    if verdict.acceptable and not (require_full and verdict.degraded):
        return
    failures = "; ".join(f"{short(s.holder.public_key)}: {s.failure}" for s in senders if s.failure)
    holders = counted(verdict.holders, "distinct holder")
    why = "; ".join(verdict.reasons) or holders
    raise RecordError(
        f"the put reached {holders} on {counted(verdict.sites, 'site')}, it"
        f" needs {wanted}{' and no degradation' if require_full else ''} ({why});"
        " nothing was recorded" + (f" (holders that failed: {failures})" if failures else ""),
        reason=TOO_FEW_HOLDERS,
    )


def placed_health(
    manifest: Manifest,
    holders: Mapping[int, Contact],
    sites: Mapping[bytes, str],
    network_sites: int,
) -> RecordHealth:
    """The record's health as the put left it (each holder's confirmed indices)."""
    by_node: dict[bytes, list[int]] = {}
    for index, contact in holders.items():
        by_node.setdefault(contact.public_key, []).append(index)
    answers = [(node, HoldingsFound(tuple(indices), (), ())) for node, indices in by_node.items()]
    return RecordHealth.of(
        manifest.record_id,
        manifest.k,
        manifest.n,
        answers,
        sites=sites,
        network_sites=network_sites,
    )


async def drop_everywhere(port: RpcPort, record_id: bytes, nodes: Iterable[Contact]) -> int:
    """Ask every node to drop what this put sent it; returns how many confirmed.

    Runs shielded from cancellation (the put may be failing because it was
    cancelled) and bounded by DROP_TIMEOUT; what it does not reach is
    collected by the holders' orphan rule or `medvault gc`.
    """
    dropped = 0

    async def drop(contact: Contact) -> None:
        nonlocal dropped
        try:
            try:
                await port.call(contact, DropShards(record_id), DROP_TIMEOUT)
            except PeerClosed:  # the put's own cancelled send broke it: a fresh connection
                await port.call(contact, DropShards(record_id), DROP_TIMEOUT)
        except RpcError as exc:
            event(
                log, logging.INFO, "drop refused", peer=short(contact.public_key), reason=str(exc)
            )
            return
        dropped += 1

    with trio.CancelScope(shield=True), trio.move_on_after(DROP_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for contact in nodes:
                nursery.start_soon(drop, contact)
    event(log, logging.INFO, "failed put dropped", record=short(record_id), holders=dropped)
    return dropped
