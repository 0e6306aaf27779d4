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
from protocol.net.messages import ErrorCode, Message
from protocol.records.messages import (
    MAX_BATCH_BLOCKS,
    ProveShards,
    ProveShardsV2,
    ShardsProven,
    ShardsStored,
    ShardsStoredProven,
    StoreAndProve,
    StoreAndProveV2,
    StoreShards,
)
from protocol.records.proofs import NONCE_SIZE, PROOF_V1, PROOF_V2, ProofSampler
from storage.codec.erasure import BytesLike
from storage.codec.manifest import Manifest

# shard index -> block of one segment: bytes, or a read-only view the encoder
# never writes again (sent as msgpack bin without being copied first)
Blocks = dict[int, BytesLike]


Batch = dict[int, tuple[int, list[BytesLike]]]  # shard index -> (first segment, blocks)
T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M", bound=Message)
IN_FLIGHT = 2  # batches sent but not yet acknowledged, per holder
_offences = RateLimitedLog(get_logger("records"), "holder failed a storage proof", period=600.0)
# What each holder was found to answer (UNKNOWN_TYPE tells an older node), bounded, most
# recent last; a holder not listed is tried with the newest messages first.
NO_STORE_AND_PROVE = 0  # StoreShards, then ProveShards (version 1 proofs)
PROVES_V1 = 1  # StoreAndProve and ProveShards: version 1 proofs
PROVES_V2 = 2  # StoreAndProveV2 and ProveShardsV2: version 2 proofs (keyed BLAKE3)
MAX_KNOWN_HOLDERS = 1024
REPROBE_AFTER = 3600.0  # seconds: a holder that lacked a message is asked it again after


class HolderAbilities:
    """Which storage-challenge messages each holder answers, as learnt from its answers.

    Not known yet: the writer hashes its sample in both proof versions (one holder's
    first put in this process) and asks version 2 first. A member that answers
    UNKNOWN_TYPE to version 2 only gets version 1 challenges: no weaker, just slower
    for the writer. What a holder lacked is forgotten after REPROBE_AFTER seconds, so
    one upgraded since is asked the newer messages again."""

    def __init__(
        self, limit: int = MAX_KNOWN_HOLDERS, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._known: collections.OrderedDict[bytes, tuple[int, float]] = collections.OrderedDict()

    def of(self, holder: bytes) -> int | None:
        known = self._known.get(holder)
        if known is None:
            return None
        ability, since = known
        if ability < PROVES_V2 and self._clock() - since >= REPROBE_AFTER:
            del self._known[holder]  # it may have been upgraded since: ask again
            return None
        return ability

    def note(self, holder: bytes, ability: int) -> None:
        self._known[holder] = (ability, self._clock())
        self._known.move_to_end(holder)
        while len(self._known) > self._limit:
            self._known.popitem(last=False)

    def lower(self, holder: bytes, ability: int) -> None:
        """It refused a message of `ability + 1`: at most `ability`."""
        known = self.of(holder)
        self.note(holder, ability if known is None else min(known, ability))

    def forget(self, holder: bytes) -> None:
        self._known.pop(holder, None)

    def proof_versions(self, holder: bytes) -> tuple[int, ...]:
        """The proof versions to hash a sample for this holder in."""
        ability = self.of(holder)
        if ability is None:
            return (PROOF_V2, PROOF_V1)
        return (PROOF_V2,) if ability == PROVES_V2 else (PROOF_V1,)


abilities = HolderAbilities()


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
            and abilities.of(self.holder.public_key) != NO_STORE_AND_PROVE
        )

    def _kinds(self, newer: type[M], older: type[M]) -> list[type[M]]:
        """The challenge messages to try, newest first: version 2 unless the holder is
        known not to answer it, version 1 if the sample was hashed in it."""
        assert self.sampler is not None
        ability = abilities.of(self.holder.public_key)
        versions = self.sampler.versions
        kinds: list[type[M]] = []
        if PROOF_V2 in versions and ability in (None, PROVES_V2):
            kinds.append(newer)
        if PROOF_V1 in versions:
            kinds.append(older)
        return kinds

    def _refused(self, kind: type[StoreAndProve | ProveShards]) -> None:
        """The holder answered UNKNOWN_TYPE to `kind`: remember what it is."""
        key = self.holder.public_key
        abilities.lower(key, PROVES_V1 if kind.PROOF == PROOF_V2 else NO_STORE_AND_PROVE)

    def _answered(self, kind: type[StoreAndProve | ProveShards]) -> None:
        key = self.holder.public_key
        if kind.PROOF == PROOF_V2:
            abilities.note(key, PROVES_V2)
        elif kind is StoreAndProve:
            abilities.note(key, PROVES_V1)

    async def _store_proving(self, batch: Batch, manifest: Manifest) -> bool | None:
        """Send each index's only batch with its challenge and check the proofs in the
        answers; whether all passed, None if the holder knows no StoreAndProve."""
        sampler = self.sampler
        assert sampler is not None
        raw = manifest.encode()
        for index, (first, blocks) in batch.items():
            views = cast(tuple[bytes, ...], tuple(blocks))  # bytes on the wire
            kinds = self._kinds(StoreAndProveV2, StoreAndProve)
            for kind in kinds:
                message = kind(
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
                        self._refused(kind)
                        continue
                    self.failure = str(exc)
                    return False
                except RpcError as exc:
                    self.failure = str(exc)
                    return False
                self._answered(kind)
                break
            else:  # every kind refused: an older holder; nothing was stored
                return None
            await self._sampled()
            if not self._proven_by(index, answer, kind.PROOF):
                return False
        return True

    def _proven_by(self, index: int, answer: object, version: int) -> bool:
        """Whether a StoreAndProve answer confirms `index`; else the failure is noted."""
        assert self.sampler is not None
        if not isinstance(answer, ShardsStoredProven):
            self.failure = f"unexpected answer {getattr(answer, 'TYPE', answer)}"
        elif not answer.complete:
            self.failure = "holder did not confirm every block"
        elif not self.sampler.verify(index, answer.proofs, version):
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
            for kind in self._kinds(ProveShardsV2, ProveShards):
                challenge = kind(self.record_id, index, sampler.nonce, sampler.segments())
                try:
                    answer = await self.port.call(self.holder, challenge, self.timeout)
                except RemoteError as exc:
                    if exc.code == ErrorCode.UNKNOWN_TYPE and kind is ProveShardsV2:
                        self._refused(kind)
                        continue
                    self.failure = f"storage proof not answered: {exc}"
                    return False
                except RpcError as exc:
                    self.failure = f"storage proof not answered: {exc}"
                    return False
                self._answered(kind)
                if not isinstance(answer, ShardsProven) or not sampler.verify(
                    index, answer.proofs, kind.PROOF
                ):
                    self._failed_proof(index)
                    return False
                break
            else:
                self.failure = "the holder answers no storage proof version hashed for it"
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
            sampler=None
            if random_bytes is None
            else _sampler(random_bytes, abilities.proof_versions(key)),
            owner_nonce=owner_nonce,
            known_manifest=known_manifest,
        )
        for key, indices in by_holder.items()
    ]


def _sampler(random_bytes: Callable[[int], bytes], versions: tuple[int, ...]) -> ProofSampler:
    seed = int.from_bytes(random_bytes(16), "big")
    return ProofSampler(nonce=random_bytes(NONCE_SIZE), rng=random.Random(seed), versions=versions)


async def send_to_holders(
    senders: list[HolderSender],
    manifest: Callable[[], Manifest],
    source: AsyncIterator[T] | None,
    work: Callable[[T], R],
    blocks_of: Callable[[R], Sequence[BytesLike] | Mapping[int, BytesLike]],
    *,
    workers: int = 1,
    ready: Sequence[R] = (),
    answered: trio.Event | None = None,
) -> None:
    """Turn each item of `source` into one segment's blocks and send each holder its own.

    `ready`: results already worked out (a put's first segment, encoded while
    its placement ran), delivered first; `source` (None: nothing more) follows.
    `answered` is set when the first sender is done (its holder answered or failed).
    `work` runs in worker threads (see run_stages); `blocks_of` maps its
    result to the segment's blocks by index, in order. When the source is
    done every holder gets its last batch with the manifest and `complete`.
    If anything fails, no holder sees the end (so none claims the shards)
    and the failure is raised as itself, outside the senders' nursery.
    """

    async def deliver(result: R) -> None:
        blocks = blocks_of(result)
        for sender in senders:
            share = {i: blocks[i] for i in sender.indices}
            try:
                sender.send.send_nowait(share)  # no scheduling round per holder
            except trio.WouldBlock:
                await sender.send.send(share)  # that holder's bound: wait for it

    async def run(sender: HolderSender) -> None:
        await sender.run(manifest)
        if answered is not None:
            answered.set()

    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        for sender in senders:
            nursery.start_soon(run, sender)
        try:
            for result in ready:
                await deliver(result)
            if source is not None:
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
