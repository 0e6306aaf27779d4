"""Sending one holder its shards of a record: batched, bounded, in order.

The putting (or repairing) node feeds each holder's sender the blocks of that
holder's indices segment by segment; the sender batches them (about
`batch_bytes` per call, two batches in flight) and, once the manifest is known,
sends the last batch of each index with the manifest and `complete`. A
holder whose call fails is marked failed and its further blocks dropped, so
one dead node neither blocks nor fails the others. A holder that says an
index is complete must then prove it keeps the blocks (ProveShards, see
protocol.records.proofs) before it counts as confirmed. An index sent in one
batch (a small record) carries its challenge with that batch (StoreAndProve)
and the proofs come back in the answer: one round trip less per holder.
"""

from __future__ import annotations

import collections
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TypeVar, cast

import trio

from node.logs import RateLimitedLog, get_logger, short_key
from node.net.errors import RemoteError, RpcError
from node.net.rpc_port import RpcPort
from node.offload import in_worker
from node.records.stages import run_stages
from protocol.dht.contact import Contact
from protocol.net.messages import ErrorCode
from protocol.records.messages import (
    MAX_BATCH_BLOCKS,
    ProveShards,
    ShardsProven,
    ShardsStored,
    ShardsStoredProven,
    StoreAndProve,
    StoreShards,
)
from protocol.records.proofs import NONCE_SIZE, ProofSampler
from storage.codec.erasure import BytesLike
from storage.codec.manifest import Manifest

# shard index -> block of one segment: bytes, or a read-only view the encoder
# never writes again (sent as msgpack bin without being copied first)
Blocks = dict[int, BytesLike]


Batch = dict[int, tuple[int, list[BytesLike]]]  # shard index -> (first segment, blocks)
T = TypeVar("T")
R = TypeVar("R")
IN_FLIGHT = 2  # batches sent but not yet acknowledged, per holder
_offences = RateLimitedLog(get_logger("records"), "holder failed a storage proof", period=600.0)
# Holders that answered StoreAndProve with UNKNOWN_TYPE (older nodes), most recent last:
# they get StoreShards, then ProveShards, without sending them a refused batch first.
MAX_OLD_HOLDERS = 1024
_old_holders: collections.OrderedDict[bytes, None] = collections.OrderedDict()


def _note_old_holder(key: bytes) -> None:
    _old_holders[key] = None
    _old_holders.move_to_end(key)
    while len(_old_holders) > MAX_OLD_HOLDERS:
        _old_holders.popitem(last=False)


class HolderSender:
    def __init__(
        self,
        *,
        port: RpcPort,
        holder: Contact,
        record_id: bytes,
        indices: list[int],
        first_segment: int = 0,
        batch_bytes: int,
        timeout: float,
        sampler: ProofSampler | None = None,
        owner_nonce: bytes | None = None,
        known_manifest: Manifest | None = None,
    ) -> None:
        self.port = port
        # A record not yet in the ledger: the nonce proves to holders we own it.
        self.owner_nonce = owner_nonce
        # Known from the start (repair, top-up): sent with each index's first batch too,
        # so the holder checks every block as it comes.
        self._early_manifest = known_manifest.encode() if known_manifest is not None else None
        self._manifest_sent: set[int] = set()
        self.sampler = sampler  # None: the holder's word is taken (tests of other parts)
        self._next_segment = first_segment
        self.holder = holder
        self.record_id = record_id
        self.indices = indices
        self.batch_bytes = batch_bytes
        self.timeout = timeout
        self.failure: str | None = None
        self.confirmed = False
        self.proof_failed = False  # it said complete, then could not show the blocks
        self._pending: dict[int, list[BytesLike]] = {i: [] for i in indices}
        self._first = dict.fromkeys(indices, first_segment)
        self._size = 0
        self._segments = 0  # segments pending: blocks per index in the next batch
        self._slots = trio.Semaphore(IN_FLIGHT)
        self._batches_sent = 0  # before the completing one
        self._sampling: list[trio.Event] = []  # sampled segments still being hashed
        self.send, self._receive = trio.open_memory_channel[Blocks](2)

    async def run(self, manifest: Callable[[], Manifest]) -> None:
        """Consume blocks until the feeder closes the channel, then complete.

        Up to IN_FLIGHT batches travel at once, so the holder's disk writes
        overlap the next batch's encoding and transfer; the completing batch
        goes only after every earlier one was acknowledged. The storage-proof
        sample is hashed in worker threads meanwhile (not before the send).
        """
        async with trio.open_nursery() as hashing:
            async with trio.open_nursery() as nursery, self._receive:
                async for blocks in self._receive:
                    if self.failure is not None:
                        continue  # drain: the feeder must never block on a dead holder
                    incoming = sum(len(block) for block in blocks.values())
                    full = self._size + incoming > self.batch_bytes
                    if self._size and (full or self._segments >= MAX_BATCH_BLOCKS):
                        # Send what is pending first: no message grows past a batch
                        # (or one segment's blocks), so each fits the peer's size cap.
                        await self._slots.acquire()
                        self._batches_sent += 1
                        nursery.start_soon(self._send_batch, self._take(), None)
                    for index, block in blocks.items():
                        self._pending[index].append(block)
                    if self.sampler is not None and self.sampler.draw(self._next_segment):
                        done = trio.Event()
                        self._sampling.append(done)
                        hashing.start_soon(self._sample, self._next_segment, blocks, done)
                    self._next_segment += 1
                    self._size += incoming
                    self._segments += 1
            if self.failure is None:
                await self._send_batch(self._take(), manifest())

    async def _sample(self, segment: int, blocks: Blocks, done: trio.Event) -> None:
        """Hash a sampled segment's blocks under the nonce, in a worker thread."""
        assert self.sampler is not None
        try:
            self.sampler.record(segment, await in_worker(self.sampler.proofs_of, blocks))
        finally:
            done.set()

    async def _sampled(self) -> None:
        """Until every sampled segment's proofs are recorded (before any is checked)."""
        for done in self._sampling:
            await done.wait()
        self._sampling.clear()

    def _take(self) -> Batch:
        batch = {i: (self._first[i], self._pending[i]) for i in self.indices}
        for index in self.indices:
            self._first[index] += len(self._pending[index])
            self._pending[index] = []
        self._size = 0
        self._segments = 0
        return batch

    async def _send_batch(self, batch: Batch, manifest: Manifest | None) -> None:
        final = manifest is not None
        if final and self._prove_inline():
            assert manifest is not None
            proven = await self._store_proving(batch, manifest)
            if proven is not None:
                self.confirmed = proven
                return
            # an older holder: nothing was stored, send it the usual way
        try:
            complete = await self._store(batch, manifest)
        finally:
            if not final:
                self._slots.release()
        if final and self.failure is None:
            if not complete:
                self.failure = "holder did not confirm every block"
            elif await self._proven():
                self.confirmed = True

    def _prove_inline(self) -> bool:
        """Whether the completing batch carries the challenge: every block of every
        index travels in it, so it is all the holder was ever sent."""
        return (
            self.sampler is not None
            and self._batches_sent == 0
            and self.holder.public_key not in _old_holders
        )

    async def _store_proving(self, batch: Batch, manifest: Manifest) -> bool | None:
        """Send each index's only batch with its challenge and check the proofs in the
        answers; whether all passed, None if the holder does not know StoreAndProve."""
        sampler = self.sampler
        assert sampler is not None
        raw = manifest.encode()
        for index, (first, blocks) in batch.items():
            views = cast(tuple[bytes, ...], tuple(blocks))  # bytes on the wire
            message = StoreAndProve(
                self.record_id,
                raw,
                index,
                first,
                views,
                self.owner_nonce,
                sampler.nonce,
                sampler.segments(),
            )
            try:
                answer = await self.port.call(self.holder, message, self.timeout)
            except RemoteError as exc:
                if exc.code == ErrorCode.UNKNOWN_TYPE and index == self.indices[0]:
                    _note_old_holder(self.holder.public_key)
                    return None
                self.failure = str(exc)
                return False
            except RpcError as exc:
                self.failure = str(exc)
                return False
            await self._sampled()
            if not self._proven_by(index, answer):
                return False
        return True

    def _proven_by(self, index: int, answer: object) -> bool:
        """Whether a StoreAndProve answer confirms `index`; else the failure is noted."""
        assert self.sampler is not None
        if not isinstance(answer, ShardsStoredProven):
            self.failure = f"unexpected answer {getattr(answer, 'TYPE', answer)}"
        elif not answer.complete:
            self.failure = "holder did not confirm every block"
        elif not self.sampler.verify(index, answer.proofs):
            self._failed_proof(index)
        else:
            return True
        return False

    def _failed_proof(self, index: int) -> None:
        self.failure = f"holder failed the storage proof of index {index}"
        self.proof_failed = True
        _offences.note(
            "claimed blocks it could not prove",
            short_key(self.holder.public_key),
            record=self.record_id.hex()[:16],
            index=index,
        )

    async def _proven(self) -> bool:
        """Whether the holder answers the storage challenge for each of its indices."""
        sampler = self.sampler
        if sampler is None:
            return True
        await self._sampled()
        for index in self.indices:
            challenge = ProveShards(self.record_id, index, sampler.nonce, sampler.segments())
            try:
                answer = await self.port.call(self.holder, challenge, self.timeout)
            except RpcError as exc:
                self.failure = f"storage proof not answered: {exc}"
                return False
            if not isinstance(answer, ShardsProven) or not sampler.verify(index, answer.proofs):
                self._failed_proof(index)
                return False
        return True

    async def _store(self, batch: Batch, manifest: Manifest | None) -> bool:
        final = manifest is not None
        raw = manifest.encode() if manifest is not None else None
        complete = True
        for index, (first, blocks) in batch.items():
            if self.failure is not None:
                return False
            if not blocks and not final:
                continue
            views = cast(tuple[bytes, ...], tuple(blocks))  # bytes on the wire
            carried = raw
            if carried is None and index not in self._manifest_sent:
                carried = self._early_manifest
            message = StoreShards(
                self.record_id, carried, index, first, views, final, self.owner_nonce
            )
            if carried is not None:
                self._manifest_sent.add(index)
            try:
                answer = await self.port.call(self.holder, message, self.timeout)
            except RpcError as exc:
                self.failure = str(exc)
                return False
            if not isinstance(answer, ShardsStored):
                self.failure = f"unexpected answer {answer.TYPE}"
                return False
            complete = complete and answer.complete
        return complete


def holder_senders(
    *,
    port: RpcPort,
    record_id: bytes,
    assignment: Iterable[tuple[int, Contact]],
    batch_bytes: int,
    timeout: float,
    random_bytes: Callable[[int], bytes] | None,
    owner_nonce: bytes | None = None,
    known_manifest: Manifest | None = None,
) -> list[HolderSender]:
    """One sender per holder, for the (index, holder) pairs of `assignment`.

    With `random_bytes` (unpredictable to the holders), each holder must pass a
    storage proof under its own fresh nonce and sample before it counts.
    """
    by_holder: dict[bytes, list[int]] = {}
    contacts: dict[bytes, Contact] = {}
    for index, contact in sorted(assignment, key=lambda pair: pair[0]):
        by_holder.setdefault(contact.public_key, []).append(index)
        contacts[contact.public_key] = contact
    return [
        HolderSender(
            port=port,
            holder=contacts[key],
            record_id=record_id,
            indices=indices,
            batch_bytes=batch_bytes,
            timeout=timeout,
            sampler=None if random_bytes is None else _sampler(random_bytes),
            owner_nonce=owner_nonce,
            known_manifest=known_manifest,
        )
        for key, indices in by_holder.items()
    ]


def _sampler(random_bytes: Callable[[int], bytes]) -> ProofSampler:
    seed = int.from_bytes(random_bytes(16), "big")
    return ProofSampler(nonce=random_bytes(NONCE_SIZE), rng=random.Random(seed))


async def send_to_holders(
    senders: list[HolderSender],
    manifest: Callable[[], Manifest],
    source: AsyncIterator[T],
    work: Callable[[T], R],
    blocks_of: Callable[[R], Sequence[BytesLike] | Mapping[int, BytesLike]],
    *,
    workers: int = 1,
) -> None:
    """Turn each item of `source` into one segment's blocks and send each holder its own.

    `work` runs in worker threads (see run_stages); `blocks_of` maps its
    result to the segment's blocks by index, in order. When the source is
    done every holder gets its last batch with the manifest and `complete`.
    If anything fails, no holder sees the end (so none claims the shards)
    and the failure is raised as itself, outside the senders' nursery.
    """

    async def deliver(result: R) -> None:
        blocks = blocks_of(result)
        for sender in senders:
            await sender.send.send({i: blocks[i] for i in sender.indices})

    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        for sender in senders:
            nursery.start_soon(sender.run, manifest)
        try:
            await run_stages(source, work, deliver, workers=workers)
        except Exception as exc:
            failure = exc
        except BaseException:
            nursery.cancel_scope.cancel()
            raise
        finally:
            if failure is not None:
                nursery.cancel_scope.cancel()
            for sender in senders:
                sender.send.close()
    if failure is not None:
        raise failure
