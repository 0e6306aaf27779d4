"""Records across the network: put, open for reading, grant, revoke, delete, check.

put: encode the segments a caller pushes (in a worker thread), place shard
index i on the i-th node of a site-aware placement over the nodes closest to
the record's DHT key, stream each holder its blocks, and only when `happy`
distinct holders confirmed complete shards write the `record` entry and the
grants (the owner, i.e. this node, and any grantees) to the ledger; a put
that falls short records nothing.

open: the ledger says whether the record exists, is deleted, and whether the
reader holds a grant; the manifest comes from a holder and must hash to what
the ledger recorded; the holders of each index come from the DHT's provider
records and the closest nodes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import nacl.signing
import trio

from node.config.storage import StorageConfig
from node.dht.service import DhtService
from node.ledger.service import LedgerService
from node.logs import event, get_logger
from node.net.errors import RpcError
from node.net.rpc_port import RpcPort
from node.offload import in_worker
from node.records.fetch import BlockFetcher
from node.records.shard_service import ShardService
from node.records.transfer import HolderSender, holder_senders, send_to_holders
from protocol.dht.contact import Contact, distance
from protocol.ids import record_dht_key
from protocol.ledger.entries import (
    GrantBody,
    RecordBody,
    RevokeBody,
    TombstoneBody,
    derive_record_id,
)
from protocol.ledger.state import GrantInfo, RecordInfo
from protocol.records.fetching import Latency
from protocol.records.messages import (
    GetHoldings,
    GetManifest,
    GetNodeInfo,
    HoldingsFound,
    ManifestFound,
    NodeInfo,
)
from protocol.records.placement import Candidate, place
from storage.codec.crypt import KEY_SIZE, SegmentCipher, check_recipient, open_sealed_key, seal_key
from storage.codec.encoder import RecordEncoder, SegmentJob
from storage.codec.erasure import BytesLike
from storage.codec.manifest import Manifest, RecordMetadata
from storage.codec.segment import EncodedSegment
from storage.errors import KeyFormatError, ManifestError

log = get_logger("records")
NODE_INFO_TTL = 300.0
ENCODE_WORKERS = 2  # segments encoded at once (hashing and crypto release the GIL)


class RecordError(Exception):
    """A record operation cannot be done; the message says why, in one line."""


@dataclass(frozen=True)
class PutResult:
    record_id: bytes
    manifest: Manifest
    holders: dict[int, bytes]
    confirmed: int


@dataclass(frozen=True)
class ReadHandle:
    record: RecordInfo
    manifest: Manifest
    grant: GrantInfo
    fetcher: BlockFetcher


@dataclass(frozen=True)
class Holding:
    contact: Contact
    found: HoldingsFound


def short(value: bytes) -> str:
    return value.hex()[:16]


MANIFEST_ASKS_AT_ONCE = 4  # candidates asked for a manifest at the same time
READ_GRACE = 1.0  # seconds a reader waits for more holders once k indices are covered


class RecordService:
    def __init__(
        self,
        *,
        identity: nacl.signing.SigningKey,
        dht: DhtService,
        ledger: LedgerService,
        shards: ShardService,
        port: RpcPort,
        config: StorageConfig,
        random_bytes: Callable[[int], bytes],
        clock_ms: Callable[[], int],
    ) -> None:
        self.identity = identity
        self.public_key = bytes(identity.verify_key)
        self.dht = dht
        self.ledger = ledger
        self.shards = shards
        self.port = port
        self.config = config
        self.random_bytes = random_bytes
        self.clock_ms = clock_ms
        self.latency = Latency()
        self._sites: dict[bytes, tuple[str, float]] = {}

    # -- placement --------------------------------------------------------------

    async def candidates(self, key: bytes, want: int) -> list[tuple[Contact, str]]:
        """Reachable nodes closest to `key` (this one included), with their sites.

        All of the DHT's k closest are asked, not just the first few beyond
        `want`: a narrower pool can miss a whole site, and site-aware
        placement can only spread over the sites its pool contains.
        """
        found = await self.dht.find_node(key)
        contacts = sorted(
            [*found.closest, self.dht.contact], key=lambda c: distance(c.node_id, key)
        )[: max(self.dht.config.k, want + 4)]
        sites: dict[bytes, str] = {}

        async def ask(contact: Contact) -> None:
            site = await self.site_of(contact)
            if site is not None:
                sites[contact.public_key] = site

        async with trio.open_nursery() as nursery:
            for contact in contacts:
                nursery.start_soon(ask, contact)
        return [(c, sites[c.public_key]) for c in contacts if c.public_key in sites]

    async def site_of(self, contact: Contact) -> str | None:
        """A node's site label (cached), or None when it does not answer."""
        cached = self._sites.get(contact.public_key)
        if cached is not None and trio.current_time() - cached[1] < NODE_INFO_TTL:
            return cached[0]
        try:
            info = await self.port.call(contact, GetNodeInfo(), self.dht.config.query_timeout)
        except RpcError:
            return None
        if not isinstance(info, NodeInfo):
            return None
        self._sites[contact.public_key] = (info.site, trio.current_time())
        return info.site

    # -- put ------------------------------------------------------------------------

    async def put(
        self,
        segments: AsyncIterator[tuple[bytes, bool]],
        *,
        metadata: RecordMetadata,
        grantees: Sequence[bytes] = (),
        expires_at: int = 0,
    ) -> PutResult:
        """Store a record pushed segment by segment (every segment but the last full)."""
        config = self.config
        for grantee in grantees:
            try:
                check_recipient(grantee)
            except KeyFormatError as exc:
                raise RecordError(f"grantee {grantee.hex()[:16]}: {exc}") from None
        nonce = self.random_bytes(16)
        record_id = derive_record_id(self.public_key, nonce)
        record_key = self.random_bytes(KEY_SIZE)
        encoder = RecordEncoder(
            record_id=record_id,
            record_key=record_key,
            k=config.k,
            n=config.n,
            segment_size=config.segment_size,
            metadata=metadata,
        )
        started = trio.current_time()
        pool = await self.candidates(record_dht_key(record_id), config.n)
        placed = trio.current_time()
        if len(pool) < config.happy:
            raise RecordError(
                f"network too small: {len(pool)} reachable nodes, a put needs"
                f" {config.happy} distinct holders (storage.happy)"
            )
        chosen = place(config.n, [Candidate(c.public_key, site) for c, site in pool])
        contacts = {c.public_key: c for c, _ in pool}
        senders = holder_senders(
            port=self.port,
            record_id=record_id,
            assignment={index: contacts[node] for index, node in enumerate(chosen)},
            batch_bytes=config.transfer_batch_bytes,
            timeout=config.call_timeout,
        )
        await self._stream(encoder, segments, senders)
        streamed = trio.current_time()
        confirmed = [s for s in senders if s.confirmed]
        if len(confirmed) < config.happy:
            failures = "; ".join(
                f"{short(s.holder.public_key)}: {s.failure}" for s in senders if s.failure
            )
            raise RecordError(
                f"only {len(confirmed)} of {len(senders)} holders confirmed their shards, a put"
                f" needs {config.happy}; nothing was recorded ({failures})"
            )
        manifest = encoder.manifest()
        await self._record(
            record_id,
            nonce=nonce,
            manifest=manifest,
            record_key=record_key,
            grantees=grantees,
            expires_at=expires_at,
        )
        event(
            log,
            logging.INFO,
            "record stored",
            record=short(record_id),
            size=manifest.size,
            holders=len(confirmed),
            placement_ms=round((placed - started) * 1000, 1),
            transfer_ms=round((streamed - placed) * 1000, 1),
            ledger_ms=round((trio.current_time() - streamed) * 1000, 1),
        )
        return PutResult(record_id, manifest, dict(enumerate(chosen)), len(confirmed))

    async def _stream(
        self,
        encoder: RecordEncoder,
        segments: AsyncIterator[tuple[bytes, bool]],
        senders: list[HolderSender],
    ) -> None:
        """Read, encode and send segments as a pipeline; every holder then completes."""

        async def claimed() -> AsyncIterator[SegmentJob]:
            last = False
            async for plaintext, last in segments:
                yield encoder.claim(plaintext, last)
                if last:
                    return
            raise RecordError("the upload ended before its last segment")

        def accepted(encoded: EncodedSegment) -> Sequence[BytesLike]:
            return encoder.accept(encoded).blocks

        try:
            await send_to_holders(
                senders,
                encoder.manifest,
                claimed(),
                encoder.encode_job,
                accepted,
                workers=ENCODE_WORKERS,
            )
        except (ValueError, ManifestError) as exc:
            raise RecordError(f"cannot encode the record: {exc}") from None

    async def _record(
        self,
        record_id: bytes,
        *,
        nonce: bytes,
        manifest: Manifest,
        record_key: bytes,
        grantees: Sequence[bytes],
        expires_at: int,
    ) -> None:
        owner = self.public_key
        record = RecordBody(
            record_id, nonce, manifest.digest(), manifest.size, manifest.k, manifest.n, owner
        )
        grants = [
            GrantBody(
                record_id,
                grantee,
                self._seal(record_key, grantee),
                0 if grantee == owner else expires_at,
            )
            for grantee in dict.fromkeys([owner, *grantees])
        ]
        await self.ledger.append_all([record, *grants])  # one transaction: all or nothing

    def _seal(self, record_key: bytes, grantee: bytes) -> bytes:
        return seal_key(record_key, grantee, self.random_bytes(32))

    # -- reading ----------------------------------------------------------------------

    def lookup(self, record_id: bytes) -> RecordInfo:
        state = self.ledger.state()
        record = state.records.get(record_id)
        if record is None:
            raise RecordError(f"unknown record {short(record_id)}")
        if record_id in state.tombstones:
            raise RecordError(f"record {short(record_id)} was deleted")
        return record

    def grant_of(self, record_id: bytes, reader: bytes) -> GrantInfo:
        self.lookup(record_id)
        grant = self.ledger.state().grant_for(record_id, reader, self.clock_ms())
        if grant is None:
            raise RecordError(f"no grant for key {short(reader)} on record {short(record_id)}")
        return grant

    async def open(self, record_id: bytes, reader: bytes | None = None) -> ReadHandle:
        """Everything needed to stream a record's ciphertext to `reader` (default: this node)."""
        record = self.lookup(record_id)
        grant = self.grant_of(record_id, reader or self.public_key)
        manifest = await self.manifest_of(record)
        holdings = await self.holdings_of(record_id, enough=manifest.k)
        holders: dict[int, list[Contact]] = {}
        for holding in holdings:
            for index in holding.found.complete:
                holders.setdefault(index, []).append(holding.contact)
        fetcher = BlockFetcher(
            port=self.port,
            manifest=manifest,
            holders=holders,
            latency=self.latency,
            timeout=self.config.call_timeout,
        )
        return ReadHandle(record, manifest, grant, fetcher)

    def record_key(self, handle: ReadHandle) -> bytes:
        """The record key, when this node itself is the reader."""
        return open_sealed_key(handle.grant.sealed_key, self.identity)

    async def plaintext(self, handle: ReadHandle, record_key: bytes) -> AsyncIterator[bytes]:
        """The record's plaintext, segment by segment (decrypted in a worker thread)."""
        manifest = handle.manifest
        cipher = SegmentCipher(record_key, manifest.record_id)
        async for segment, ciphertext in handle.fetcher.ciphertext():
            yield await in_worker(
                cipher.decrypt_segment, segment, manifest.is_last(segment), ciphertext
            )

    async def manifest_of(self, record: RecordInfo) -> Manifest:
        """The record's manifest, checked against the ledger's hash.

        Candidates are asked a few at a time and the first good answer wins,
        so holders that have left cost one call timeout in all, not each.
        """
        local = self.shards.manifest(record.record_id)
        if local is not None and local.digest() == record.manifest_hash:
            return local
        found: list[Manifest] = []
        limiter = trio.CapacityLimiter(MANIFEST_ASKS_AT_ONCE)

        async def ask(contact: Contact, done: trio.CancelScope) -> None:
            async with limiter:
                try:
                    answer = await self.port.call(
                        contact, GetManifest(record.record_id), self.config.call_timeout
                    )
                except RpcError:
                    return
            if not isinstance(answer, ManifestFound) or answer.manifest is None:
                return
            try:
                manifest = Manifest.decode(answer.manifest)
            except ManifestError:
                return
            if manifest.digest() == record.manifest_hash:
                found.append(manifest)
                done.cancel()

        async with trio.open_nursery() as nursery:
            for contact in await self._holder_candidates(record.record_id):
                nursery.start_soon(ask, contact, nursery.cancel_scope)
        if found:
            return found[0]
        raise RecordError(f"no holder of record {short(record.record_id)} served its manifest")

    async def _holder_candidates(self, record_id: bytes) -> list[Contact]:
        key = record_dht_key(record_id)
        found = await self.dht.find_providers(key)
        contacts = {p.provider.public_key: Contact.from_info(p.provider) for p in found.providers}
        for contact in [self.dht.contact, *found.closest]:
            contacts.setdefault(contact.public_key, contact)
        return list(contacts.values())

    async def holdings_of(
        self, record_id: bytes, verify: bool = False, *, enough: int | None = None
    ) -> list[Holding]:
        """What each reachable candidate holder holds of the record.

        With `enough` (a reader's k), stop waiting READ_GRACE seconds after the
        answers cover that many distinct complete indices: a reader needs no
        census, and waiting out every departed candidate's timeout is most
        of a get's latency under churn. Surveys wait for every answer.
        """
        results: list[Holding] = []
        covered: set[int] = set()

        async def ask(contact: Contact, nursery: trio.Nursery) -> None:
            try:
                answer = await self.port.call(
                    contact, GetHoldings(record_id, verify), self.config.call_timeout
                )
            except RpcError:
                return
            if isinstance(answer, HoldingsFound) and (
                answer.complete or answer.partial or answer.corrupt
            ):
                results.append(Holding(contact, answer))
                before = len(covered)
                covered.update(answer.complete)
                if enough is not None and before < enough <= len(covered):
                    nursery.cancel_scope.deadline = trio.current_time() + READ_GRACE

        async with trio.open_nursery() as nursery:
            for contact in await self._holder_candidates(record_id):
                nursery.start_soon(ask, contact, nursery)
        return sorted(results, key=lambda h: h.contact.node_id)

    # -- the owner's entries ---------------------------------------------------------------

    def _owned(self, record_id: bytes) -> RecordInfo:
        record = self.lookup(record_id)
        if record.owner != self.public_key:
            raise RecordError(
                f"record {short(record_id)} is owned by {short(record.owner)}, not this node"
            )
        return record

    async def grant(self, record_id: bytes, grantee: bytes, expires_at: int = 0) -> None:
        self._owned(record_id)
        own = self.grant_of(record_id, self.public_key)
        record_key = open_sealed_key(own.sealed_key, self.identity)
        await self.ledger.append(
            GrantBody(record_id, grantee, self._seal(record_key, grantee), expires_at)
        )

    async def revoke(self, record_id: bytes, grantee: bytes) -> None:
        self._owned(record_id)
        if self.ledger.state().grant_for(record_id, grantee, self.clock_ms()) is None:
            raise RecordError(f"key {short(grantee)} holds no grant on record {short(record_id)}")
        await self.ledger.append(RevokeBody(record_id, grantee))

    async def delete(self, record_id: bytes) -> None:
        """Tombstone the record: every holder deletes its shards when it sees the entry."""
        self._owned(record_id)
        await self.ledger.append(TombstoneBody(record_id))

    async def submit(self, raw: bytes) -> None:
        """Accept an entry a person signed elsewhere (e.g. an attestation made with --as)."""
        accepted = await self.ledger.ingest([raw])
        if not accepted:
            raise RecordError(
                "the entry was not accepted (bad signature, duplicate or out of order)"
            )
        reason = self.ledger.state().rejected.get(accepted[0].hash)
        if reason is not None:
            raise RecordError(f"the entry has no effect: {reason}")
