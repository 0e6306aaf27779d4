"""Reading a record's blocks from the network: verified, parallel, fastest first.

Per window of segments, each segment needs k verified blocks; which holder
is asked for which block, round by round, is protocol.records.fetching's
decision (data shards first, fastest holder first). Every answer is checked
against the manifest's block hashes here, and a missing, corrupt or late
block is tried again from another index or holder. A segment that cannot reach k good
blocks raises TooFewShards naming it. Decoding (which needs no key: the
result is still ciphertext), and the caller's `finish` step (a reader's
decryption), run on up to DECODE_THREADS worker threads at once, a batch of
DECODE_BATCH segments at a time, handed back in order: ISA-L, BLAKE3 and
libsodium release the GIL, so a get uses both cores, and at most a batch of
decoded segments waits beside the fetch window.

Every request carries the reader's permit (or a repairer's holder proof,
made per holder): holders serve only what their own ledger allows
(node.records.read_gate). A holder whose ledger lags (the grant or the
record was written a moment ago) refuses for now: when such refusals left a
segment short, the fetch waits and asks again, LAG_RETRIES times at most,
then fails saying why the holders refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import trio

from node.net.errors import RemoteError, RpcError
from node.net.rpc_port import RpcPort
from node.offload import in_worker
from node.records.read_gate import needs_retry
from protocol.dht.contact import Contact
from protocol.records.fetching import FetchRounds, Latency
from protocol.records.messages import (
    MAX_FETCH_REFS,
    BlockRef,
    BlocksFound,
    FetchBlocks,
    HolderProof,
)
from storage.codec.bufferpool import BufferPool
from storage.codec.crypt import MAC_SIZE
from storage.codec.erasure import ReedSolomon
from storage.codec.manifest import Manifest

WINDOW_BYTES = 8 * 1024 * 1024
REQUEST_BYTES = 3 * 1024 * 1024
LAG_RETRIES = 4  # rounds of asking again when lagging ledgers refused (waits 1+2+4+8 s)
LAG_FIRST_WAIT = 1.0  # seconds before the first retry; doubled after each
DECODE_THREADS = 2  # segments of one get decoded at once (the machine's two cores)
DECODE_BATCH = 4  # segments decoded ahead of the reader, at most

Permit = Callable[[], bytes | None]
# (segment, its ciphertext) -> what the reader wants of it, run in the decode thread.
# The ciphertext is a view of a reused buffer, valid only during the call (it may be
# decrypted in place): what is kept must be copied out.
Finish = Callable[[int, memoryview], bytes]
Proof = Callable[[Contact], Awaitable[HolderProof | None]]


class Meter(Protocol):
    """What counts a get (node.metrics.records.GetMeter): bytes out, then its end."""

    plaintext: bool  # the caller counts decrypted bytes itself

    def moved(self, size: int) -> None: ...

    def finished(self) -> None: ...

    def failed(self, exc: BaseException) -> None: ...


class TooFewShards(Exception):
    """Fewer than k verified blocks of a segment could be fetched."""


def no_permit() -> bytes | None:
    return None


class BlockFetcher:
    def __init__(
        self,
        *,
        port: RpcPort,
        manifest: Manifest,
        holders: dict[int, list[Contact]],
        latency: Latency,
        timeout: float,
        permit: Permit = no_permit,
        proof: Proof | None = None,
        lag_retries: int = LAG_RETRIES,
        meter: Meter | None = None,
        prefetched: dict[int, dict[int, bytes]] | None = None,
    ) -> None:
        self.port = port
        self.manifest = manifest
        self.holders = holders
        self.latency = latency
        self.timeout = timeout
        self.permit = permit  # the reader's permit, fresh at each call
        self.proof = proof  # a repairer's holder proof for one holder
        self.lag_retries = lag_retries
        self.meter = meter  # a reader's get, counted as its ciphertext goes out (None: repair)
        self.code = ReedSolomon(manifest.k, manifest.n)
        # A full segment is assembled (and decrypted) in a reused buffer, not a fresh one.
        full = manifest.block_size(0) * manifest.k if manifest.segment_count else 0
        self._scratch = BufferPool(full, keep=DECODE_THREADS)
        self.corrupt: dict[bytes, set[int]] = {}
        # Verified blocks that came with the holdings (FetchHeld), by segment: used once.
        self._prefetched = prefetched or {}
        self.refused: Counter[str] = Counter()  # why holders refused, this fetch round

    async def ciphertext(
        self, first: int = 0, finish: Finish | None = None
    ) -> AsyncGenerator[tuple[int, bytes]]:
        """(segment, ciphertext) for every segment from `first`, in order; with `finish`,
        (segment, finish(segment, ciphertext)), computed in the decode thread."""
        meter = self.meter
        if meter is None:
            async for segment, data in self._decoded(first, finish):
                yield segment, data
            return
        try:
            async for segment, data in self._decoded(first, finish):
                if not meter.plaintext:
                    meter.moved(len(data))
                yield segment, data
        except BaseException as exc:
            meter.failed(exc)
            raise
        meter.finished()

    async def _decoded(
        self, first: int, finish: Finish | None
    ) -> AsyncGenerator[tuple[int, bytes]]:
        """Every segment decoded (and finished), in order, DECODE_BATCH at a time.

        A failure (a segment that does not authenticate) is raised at its turn,
        after the segments before it, as when segments were decoded one by one.
        """
        limiter = trio.CapacityLimiter(DECODE_THREADS)
        batch: list[tuple[int, dict[int, bytes]]] = []
        async for item in self.segment_blocks(first):
            batch.append(item)
            if len(batch) < DECODE_BATCH and item[0] < self.manifest.segment_count - 1:
                continue
            done = await self._decode_batch(batch, finish, limiter)
            batch = []
            for segment, result in done:
                if isinstance(result, Exception):
                    raise result
                yield segment, result

    async def _decode_batch(
        self,
        batch: list[tuple[int, dict[int, bytes]]],
        finish: Finish | None,
        limiter: trio.CapacityLimiter,
    ) -> list[tuple[int, bytes | Exception]]:
        results: list[bytes | Exception] = [b""] * len(batch)

        async def one(slot: int, segment: int, blocks: dict[int, bytes]) -> None:
            try:
                results[slot] = await in_worker(
                    self._decode, segment, blocks, finish, limiter=limiter
                )
            except Exception as exc:
                results[slot] = exc

        async with trio.open_nursery() as nursery:
            for slot, (segment, blocks) in enumerate(batch):
                nursery.start_soon(one, slot, segment, blocks)
        return [(segment, result) for (segment, _), result in zip(batch, results, strict=True)]

    async def segment_blocks(self, first: int = 0) -> AsyncIterator[tuple[int, dict[int, bytes]]]:
        """(segment, k verified blocks by index) for every segment from `first`, in order."""
        m = self.manifest
        per_segment = m.block_size(0) * m.k if m.segment_count else 1
        window = max(1, WINDOW_BYTES // max(per_segment, 1))
        for start in range(first, m.segment_count, window):
            segments = range(start, min(m.segment_count, start + window))
            blocks = await self.fetch(segments, m.k)
            for segment in segments:
                yield segment, blocks.pop(segment)

    def _decode(self, segment: int, blocks: dict[int, bytes], finish: Finish | None) -> bytes:
        """In a decode thread: the segment's ciphertext (lost data blocks rebuilt) assembled
        in a reused buffer, then copied out, or finished there (decrypted in place)."""
        size = self.manifest.plain_size(segment) + MAC_SIZE
        full = self.code.shard_size(size) * self.code.k == self._scratch.size
        buffer = memoryview(self._scratch.take() if full else bytearray(size))
        self.code.decode_into(blocks, size, buffer)
        ciphertext = buffer[:size]
        return bytes(ciphertext) if finish is None else finish(segment, ciphertext)

    async def fetch(
        self, segments: Sequence[int], need: int, avoid: Sequence[int] = ()
    ) -> dict[int, dict[int, bytes]]:
        """At least `need` verified blocks per segment (indices in `avoid` not used)."""
        got: dict[int, dict[int, bytes]] = {s: {} for s in segments}
        for segment in segments:
            for index, block in self._prefetched.pop(segment, {}).items():
                if index not in avoid:
                    got[segment][index] = block
        wait = LAG_FIRST_WAIT
        for attempt in range(self.lag_retries + 1):
            self.refused.clear()
            rounds = FetchRounds(
                segments=segments,
                need=need,
                n=self.manifest.n,
                holders=self.holders,
                latency=self.latency,
                corrupt=self.corrupt,
                avoid=avoid,
            )
            for segment, blocks in got.items():
                for index in blocks:
                    rounds.received(segment, index)
            while rounds.short():
                plan = rounds.next_round()
                if not plan:
                    break
                async with trio.open_nursery() as nursery:
                    for holder, refs in plan.items():
                        for chunk in self._chunks(refs):
                            nursery.start_soon(self._ask, holder, chunk, got, rounds)
            if not rounds.short():
                return got
            lagging = any(needs_retry(code) for code in self.refused)
            if not lagging or attempt == self.lag_retries:
                raise TooFewShards(rounds.shortfall() + self._refusals())
            await trio.sleep(wait)  # a holder's ledger may just not have the entry yet
            wait *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _refusals(self) -> str:
        if not self.refused:
            return ""
        why = ", ".join(f"{count} {code}" for code, count in sorted(self.refused.items()))
        return (
            f"; holders refused ({why}): the reader needs a current grant in the"
            " holders' ledgers (revoked, expired, or the grant has not reached them yet)"
        )

    def _chunks(self, refs: list[BlockRef]) -> list[list[BlockRef]]:
        per_request = min(
            MAX_FETCH_REFS, max(1, REQUEST_BYTES // max(self.manifest.block_size(0), 1))
        )
        return [refs[i : i + per_request] for i in range(0, len(refs), per_request)]

    async def _ask(
        self,
        holder: Contact,
        refs: list[BlockRef],
        got: dict[int, dict[int, bytes]],
        rounds: FetchRounds,
    ) -> None:
        started = trio.current_time()
        proof = await self.proof(holder) if self.proof is not None else None
        request = FetchBlocks(self.manifest.record_id, tuple(refs), self.permit(), proof)
        try:
            answer = await self.port.call(holder, request, self.timeout)
        except RemoteError as exc:  # answered: a refusal is not slowness
            self.refused[exc.code] += 1
            self.latency.note(holder.public_key, trio.current_time() - started)
            return
        except RpcError:
            self.latency.note(holder.public_key, self.timeout)
            return
        self.latency.note(holder.public_key, trio.current_time() - started)
        if not isinstance(answer, BlocksFound) or len(answer.blocks) != len(refs):
            return
        checked = await in_worker(self._verify, refs, answer.blocks)
        for ref, block, good in checked:
            if good:
                got[ref.segment][ref.index] = block
                rounds.received(ref.segment, ref.index)
            else:
                self.corrupt.setdefault(holder.public_key, set()).add(ref.index)

    def _verify(
        self, refs: list[BlockRef], blocks: Sequence[bytes | None]
    ) -> list[tuple[BlockRef, bytes, bool]]:
        """In a worker thread: (ref, block, hash matches) for every block received, by the
        hash of the manifest's version (BLAKE3 from version 3, which frees the GIL)."""
        manifest = self.manifest
        return [
            (ref, block, manifest.verify_block(ref.segment, ref.index, block))
            for ref, block in zip(refs, blocks, strict=True)
            if block is not None
        ]
