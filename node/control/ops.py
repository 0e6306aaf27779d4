"""What each control request does to the node.

Simple requests answer one typed reply (protocol.control.replies). put
reads the upload as Chunk frames and cuts it into segments itself (a client
may send chunks of any size); get streams either plaintext (the node reads
with its own grant) or ciphertext plus the reader's sealed key, so a
person's private key stays in the CLI that holds it. Record keys never
cross the socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO, Protocol, TypeVar

import trio

from node.assembly import Node
from node.control import emergency_ops
from node.ledger.service import LedgerError
from node.logs import event, get_logger
from node.net.membership import encoded_certificate
from node.offload import in_worker
from node.records.errors import RecordError
from node.records.fetch import TooFewShards
from protocol.control.commands import (
    Audit,
    Check,
    Chunk,
    ControlRequest,
    Delete,
    FeedHead,
    Gc,
    Get,
    Grant,
    Ledger,
    ListRecords,
    NodeKey,
    PeerCertificate,
    Peers,
    PublishRevocation,
    Put,
    ResolveRecord,
    ResumeFeed,
    Revocations,
    Revoke,
    Status,
    StealthGrants,
    Submit,
)
from protocol.control.replies import (
    AuditReply,
    CheckReply,
    CheckRow,
    ControlReply,
    DataChunk,
    Done,
    FeedHeadReply,
    FeedResumed,
    GcReply,
    GetHeader,
    HealthReport,
    LedgerReply,
    LedgerRow,
    NodeKeyReply,
    PeerCertificateReply,
    PeerRow,
    PeersReply,
    PutReply,
    RecordResolved,
    RecordRow,
    RecordsReply,
    RevocationPublished,
    RevocationRow,
    RevocationsReply,
    StatusReply,
    StealthGrantRow,
    StealthGrantsReply,
    UploadProgress,
    UploadReady,
    Written,
)
from protocol.dht.contact import Contact
from protocol.ids import node_id
from protocol.ledger.entries import StealthGrantBody
from protocol.ledger.trail import hidden_reads, trail
from protocol.membership.revocation import RevocationError, parse
from protocol.records.purpose import Purpose
from protocol.records.upload import UploadSegments
from storage.codec import erasure
from storage.codec.crypt import SegmentCipher
from storage.codec.encoder import read_full
from storage.codec.manifest import RecordMetadata
from storage.errors import DecryptionError, StorageError

log = get_logger("control")
T = TypeVar("T")
DESCRIBE_AT_ONCE = 8  # records whose manifests ls fetches at the same time
PEERS_ASKED_AT_ONCE = 16  # contacts `peers` asks for their site at the same time
DESCRIBE_WAIT = 10.0  # seconds ls spends on names and types in all
OPERATOR_ERRORS: tuple[type[Exception], ...] = (
    RecordError,
    LedgerError,
    TooFewShards,
    StorageError,
    RevocationError,
)


def _regular_size(fd: int) -> int:
    """The size of an attached regular file (0 for a pipe or a terminal)."""
    info = os.fstat(fd)
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


async def _unless_client_leaves(
    put: Callable[[], Awaitable[PutReply]], stream: Replies
) -> PutReply:
    """Run an attached put while watching the client: if it hangs up (Ctrl-C), the
    put is cancelled, which makes it drop what holders took and record nothing.

    The reply is sent as soon as the put returns, before the watch is cancelled:
    waiting for that cancellation first put the reply behind whatever the put's
    ledger entries set going on this thread (gossip pushes, announcements)."""
    results: list[PutReply] = []
    failures: list[Exception] = []

    async def watch(scope: trio.CancelScope) -> None:
        if await stream.receive() is not None:
            failures.append(RecordError("a frame arrived during an attached upload"))
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, nursery.cancel_scope)
        try:
            results.append(await put())
        except Exception as exc:  # raised as itself below, not in an exception group
            failures.append(exc)
        else:
            try:
                await stream.send(results[0])
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                failures.append(exc)  # stored, but the client left before hearing so
        nursery.cancel_scope.cancel()
    if failures:
        raise failures[0]
    if not results:
        event(log, logging.INFO, "upload abandoned", reason="the client hung up")
        raise trio.BrokenResourceError("the client hung up during the put")
    return results[0]


class Replies(Protocol):
    async def receive(self) -> ControlRequest | None: ...

    async def send(self, reply: ControlReply) -> None: ...

    def take_fd(self) -> int | None: ...


class ControlOps:
    def __init__(self, node: Node, *, started: float) -> None:
        self.node = node
        self.started = started
        self._simple: dict[type, Callable[[Any], Awaitable[ControlReply]]] = {
            Status: self.status,
            Peers: self.peers,
            ListRecords: self.list_records,
            Grant: self.grant,
            Revoke: self.revoke,
            Delete: self.delete,
            FeedHead: self.feed_head,
            Submit: self.submit,
            Ledger: self.ledger,
            Check: self.check,
            Gc: self.gc,
            ResumeFeed: self.resume_feed,
            ResolveRecord: self.resolve,
            PublishRevocation: self.publish_revocation,
            Revocations: self.revocations,
            NodeKey: self.node_key,
            StealthGrants: self.stealth_grants,
            PeerCertificate: self.peer_certificate,
            **emergency_ops.handlers(node),
            Audit: self.audit,
        }

    async def handle(self, request: ControlRequest, stream: Replies) -> None:
        if isinstance(request, Put):
            await self.put(request, stream)
        elif isinstance(request, Get):
            await self.get(request, stream)
        elif type(request) in self._simple:
            await stream.send(await self._simple[type(request)](request))
        else:
            raise RecordError(f"a {request.OP} frame cannot start a request")

    # -- node --------------------------------------------------------------------

    async def status(self, request: Status) -> StatusReply:
        node = self.node
        state = node.ledger.state()
        config = node.parts.config.storage
        store = node.parts.store
        orphans = await in_worker(node.shards.orphans, state.records)
        return StatusReply(
            public_key=node.public_key,
            node_id=node_id(node.public_key),
            address=node.contact.address,
            site=node.shards.site,
            uptime_s=round(trio.current_time() - self.started, 1),
            contacts=len(node.dht.routing),
            connections=len(node.manager.peers),
            ledger_entries=len(node.ledger.book),
            records=len(state.records) - len(state.tombstones),
            records_held=len(node.shards.holdings.records()),
            store_used_bytes=store.used_bytes,
            store_quota_bytes=store.capacity or 0,
            k=config.k,
            n=config.n,
            happy=config.happy,
            segment_size=config.segment_size,
            repair_passes=node.upkeep.passes,
            orphan_pieces=orphans[0],
            orphan_bytes=orphans[1],
            ledger_caught_up=node.ledger.caught_up,
            revoked_nodes=len(self._revoked()),
            erasure_codec=erasure.describe_backend(),
        )

    async def node_key(self, request: NodeKey) -> NodeKeyReply:
        return NodeKeyReply(self.node.public_key)

    async def peer_certificate(self, request: PeerCertificate) -> PeerCertificateReply:
        return PeerCertificateReply(
            encoded_certificate(self.node.parts.membership, request.node_key)
        )

    async def peers(self, request: Peers) -> PeersReply:
        """Every routing-table contact, each asked now (a cached answer would show a
        node that just died as reachable)."""
        contacts = self.node.dht.routing.contacts()
        sites: dict[bytes, str | None] = {}
        limiter = trio.CapacityLimiter(PEERS_ASKED_AT_ONCE)

        async def ask(contact: Contact) -> None:
            async with limiter:
                reach = self.node.records.reach
                sites[contact.public_key] = await reach.site_of(contact, fresh=True)

        async with trio.open_nursery() as nursery:
            for contact in contacts:
                nursery.start_soon(ask, contact)
        return PeersReply(
            tuple(
                PeerRow(
                    public_key=c.public_key,
                    node_id=c.node_id,
                    address=c.address,
                    site=sites.get(c.public_key),
                    reachable=sites.get(c.public_key) is not None,
                )
                for c in sorted(contacts, key=lambda c: c.node_id)
            )
        )

    # -- membership ----------------------------------------------------------------

    async def publish_revocation(self, request: PublishRevocation) -> RevocationPublished:
        """Apply an authority's revocation here and gossip it to every peer."""
        service = self.node.revocations
        if service is None:
            raise RevocationError(
                "this is an open network (no network.authorities): there is no membership"
                " to revoke; list the key in network.revoked instead"
            )
        published = await service.publish(parse(request.revocation))
        return RevocationPublished(
            node_key=published.revocation.node_key,
            new=published.new,
            pushed_to=published.pushed,
        )

    async def revocations(self, request: Revocations) -> RevocationsReply:
        return RevocationsReply(tuple(self._revoked()))

    def _revoked(self) -> list[RevocationRow]:
        membership = self.node.parts.membership
        if membership is None:
            return []
        rows = [
            RevocationRow(r.node_key, r.revoked_at, r.authority, "authority")
            for r in membership.revocations.all()
        ]
        rows += [
            RevocationRow(key, 0, b"", "config")
            for key in sorted(membership.revoked)
            if key not in membership.revocations
        ]
        return rows

    # -- records -------------------------------------------------------------------

    async def put(self, request: Put, stream: Replies) -> PutReply:
        """Store the upload; its reply is sent from here (as soon as the put returns)."""
        size = self.node.records.config.segment_size
        with contextlib.ExitStack() as attached:
            segments: AsyncIterator[tuple[bytes, bool]]
            size_hint = request.size
            if not request.attached:
                segments = upload_segments(stream, size)
            else:
                fd = stream.take_fd()
                if fd is None:
                    raise RecordError("the put said a file was attached, but none came")
                source = attached.enter_context(os.fdopen(fd, "rb", buffering=0))
                size_hint = size_hint or _regular_size(fd)
                segments = file_segments(source, size, stream)
            event(log, logging.INFO, "upload started", grantees=len(request.grantees))
            await stream.send(UploadReady(size))
            metadata = RecordMetadata(
                content_type=request.content_type or "application/octet-stream",
                filename=request.filename,
                patient_ref=request.patient.hex() if request.patient else "",
            )
            patient = [request.patient] if request.patient else []
            stored = functools.partial(
                self.node.records.put,
                segments,
                metadata=metadata,
                grantees=patient,
                expiring=request.grantees,
                expires_at=request.expires_at,
                size_hint=size_hint,
                require_full=request.require_full,
            )
            grantees = tuple(dict.fromkeys([self.node.public_key, *patient, *request.grantees]))

            async def put() -> PutReply:
                result = await stored()
                verdict = result.verdict
                return PutReply(
                    record_id=result.record_id,
                    size=result.size,
                    segments=result.manifest.segment_count,
                    holders=verdict.holders,
                    sites=verdict.sites,
                    degraded=verdict.degraded,
                    reasons=verdict.reasons,
                    grantees=grantees,
                )

            if request.attached:
                return await _unless_client_leaves(put, stream)
            reply = await put()
        await stream.send(reply)
        return reply

    async def get(self, request: Get, stream: Replies) -> None:
        records = self.node.records
        purpose = Purpose(request.purpose) if request.purpose is not None else None
        handle = await records.open(request.record_id, request.reader, request.permits, purpose)
        manifest = handle.manifest
        size, segments = manifest.size, manifest.segment_count  # as a person: the padded size
        if request.reader is None:
            record_key = records.record_key(handle)
            contents = manifest.contents(SegmentCipher(record_key, manifest.record_id))
            metadata = contents.metadata
            await stream.send(
                GetHeader(
                    contents.size,
                    segments,
                    filename=metadata.filename,
                    content_type=metadata.content_type,
                )
            )
            segment = 0
            async for plaintext in records.plaintext(handle, record_key):
                await stream.send(DataChunk(segment, plaintext))
                segment += 1
        else:
            await stream.send(
                GetHeader(
                    size, segments, manifest=manifest.encode(), sealed_key=handle.grant.sealed_key
                )
            )
            async for segment, ciphertext in handle.fetcher.ciphertext():
                await stream.send(DataChunk(segment, ciphertext))
        await stream.send(Done())

    async def list_records(self, request: ListRecords) -> RecordsReply:
        node = self.node
        reader = request.reader or node.public_key
        state = node.ledger.state()
        now = node.clock_ms()
        rows = []
        for record in sorted(state.records.values(), key=lambda r: (r.created_at, r.record_id)):
            if record.record_id in state.tombstones:
                continue
            if record.owner != reader and state.grant_for(record.record_id, reader, now) is None:
                continue
            rows.append(
                RecordRow(
                    record_id=record.record_id,
                    owner=record.owner,
                    size=record.size,
                    k=record.k,
                    n=record.n,
                    created_at=record.created_at,
                    grantees=tuple(
                        g.grantee for g in state.grants_of(record.record_id) if g.active(now)
                    ),
                    attested_by=tuple(state.attestations.get(record.record_id, ())),
                )
            )
        described = list(rows)
        limiter = trio.CapacityLimiter(DESCRIBE_AT_ONCE)

        async def describe(position: int) -> None:
            async with limiter:
                described[position] = await self._describe(rows[position], reader, now)

        with trio.move_on_after(DESCRIBE_WAIT):  # names are a courtesy: never a stuck ls
            async with trio.open_nursery() as nursery:
                for position in range(len(rows)):
                    nursery.start_soon(describe, position)
        return RecordsReply(tuple(described))

    async def _describe(self, row: RecordRow, reader: bytes, now: int) -> RecordRow:
        """The row with the record's name and type, for a reader who can open them."""
        records = self.node.records
        grant = self.node.ledger.state().grant_for(row.record_id, reader, now)
        if grant is None:
            return row
        try:
            manifest = await records.manifest_of(records.lookup(row.record_id))
        except RecordError:
            return row
        if reader != self.node.public_key:
            return dataclasses.replace(
                row, sealed_metadata=manifest.sealed_metadata, sealed_key=grant.sealed_key
            )
        try:  # a junk grant (anyone may grant this node anything) must not break ls
            cipher = SegmentCipher(records.own_key(grant), manifest.record_id)
            contents = manifest.contents(cipher)
        except StorageError:
            return row
        return dataclasses.replace(
            row,
            size=contents.size,  # the ledger shows the padded size; the key opens the true one
            filename=contents.metadata.filename,
            content_type=contents.metadata.content_type,
        )

    async def grant(self, request: Grant) -> Written:
        records = self.node.records
        entry = await records.grant(
            request.record_id, request.grantee, request.expires_at, patient=request.patient
        )
        return Written(entry.raw)

    async def revoke(self, request: Revoke) -> Written:
        return Written((await self.node.records.revoke(request.record_id, request.grantee)).raw)

    async def delete(self, request: Delete) -> Written:
        return Written((await self.node.records.delete(request.record_id)).raw)

    async def resolve(self, request: ResolveRecord) -> RecordResolved:
        return RecordResolved(self.node.records.resolve(request.prefix))

    # -- ledger ------------------------------------------------------------------------

    async def feed_head(self, request: FeedHead) -> FeedHeadReply:
        record = self.node.records.lookup(request.record_id)
        book = self.node.ledger.book
        head = book.head_entry(request.author)
        if head is None and request.author in book.flagged:
            raise LedgerError("this key's ledger feed is forked; it cannot be extended")
        return FeedHeadReply(
            seq=1 if head is None else head.seq + 1,
            prev=b"" if head is None else head.hash,
            manifest_hash=record.manifest_hash,
            next_index=self.node.ledger.stealth.next_index(request.record_id),
        )

    async def stealth_grants(self, request: StealthGrants) -> StealthGrantsReply:
        """Stealth grants after a cursor, with what a wallet shows (public material only)."""
        ledger = self.node.ledger
        found, cursor = ledger.stealth.after(request.after, request.limit, request.record_id)
        state = ledger.state()
        now = self.node.clock_ms()
        rows = []
        for position, entry in found:
            body = entry.body
            assert isinstance(body, StealthGrantBody)
            grant = state.grants.get((body.record_id, body.one_time))
            record = state.records.get(body.record_id)
            rows.append(
                StealthGrantRow(
                    position=position,
                    record_id=body.record_id,
                    index=body.index,
                    grant=body.grant,
                    expires_at=body.expires_at,
                    patient=body.patient,
                    author=entry.author,
                    timestamp=entry.timestamp,
                    entry=entry.hash,
                    current=grant is not None and grant.entry == entry.hash and grant.active(now),
                    rejected=state.rejected.get(entry.hash),
                    size=record.size if record is not None else 0,
                )
            )
        return StealthGrantsReply(tuple(rows), cursor, len(ledger.stealth.entries))

    async def submit(self, request: Submit) -> Done:
        await self.node.records.submit(request.entry)
        return Done()

    async def ledger(self, request: Ledger) -> LedgerReply:
        entries = self.node.ledger.book.entries()
        if request.record_id is not None:
            entries = [e for e in entries if e.record_id == request.record_id]
        # Timestamps are minutes (protocol.ledger.timestamps): within one, the order
        # the entries reached this node (a feed in seq order, a record before what
        # follows from it) says more than any field does.
        entries.sort(key=lambda e: e.timestamp)
        if request.tail:
            entries = entries[-request.tail :]
        rejected = self.node.ledger.state().rejected
        return LedgerReply(tuple(LedgerRow(e.raw, rejected.get(e.hash)) for e in entries))

    async def audit(self, request: Audit) -> AuditReply:
        """The record's trail, for its owner's node or a node it is granted to (the trail
        says who reads what: a node without a part in the record is refused)."""
        node, rid = self.node, request.record_id
        state = node.ledger.state()
        record = state.records.get(rid)
        if record is None:
            raise RecordError(f"unknown record {rid.hex()[:16]}")
        me = node.public_key
        if record.owner != me and state.grant_for(rid, me, node.clock_ms()) is None:
            raise RecordError(
                f"this node neither owns record {rid.hex()[:16]} nor holds a current grant"
                " of it: only those may see who read it (ask the owner's operator)"
            )
        entries = [e for e in node.ledger.book.entries() if e.record_id == rid]
        entries.sort(key=lambda e: e.timestamp)  # then arrival order, as `ledger` shows
        membership = node.parts.membership
        site_of = membership.site_of if membership is not None else lambda key: None
        # Here, in trio's thread: the live state changes between checkpoints.
        rows = trail(rid, entries, state, site_of, self._audit_key(rid))
        return AuditReply(rid, record.owner, tuple(rows), hidden_reads(rid, entries, state))

    def _audit_key(self, record_id: bytes) -> bytes | None:
        """The record key this node's grant seals (the owner's own, or a grantee's): it
        opens emergency reasons and sign-off notes in the trail; None if it has none."""
        own = self.node.ledger.state().grants.get((record_id, self.node.public_key))
        if own is None or own.stealth:
            return None
        try:
            return self.node.records.own_key(own)
        except DecryptionError:
            return None  # a key sealed wrongly: the trail shows the rest, not the texts

    async def resume_feed(self, request: ResumeFeed) -> FeedResumed:
        return FeedResumed(self.node.ledger.resume_forked_feed())

    async def gc(self, request: Gc) -> GcReply:
        """Delete orphans older than the request says (not only past the configured graces)."""
        node = self.node
        if not node.ledger.caught_up:
            raise RecordError(
                "this node's ledger has not caught up with its peers yet: shards of records"
                " it does not know of yet would be taken for leftovers; gc waits for that"
                " (`status` shows ledger_caught_up)"
            )
        store = node.parts.store
        before = store.used_bytes
        records, indices = await node.shards.collect(
            node.ledger.state().records, node.clock_ms() - request.older_than_s * 1000
        )
        return GcReply(records, indices, max(0, before - store.used_bytes))

    async def check(self, request: Check) -> CheckReply:
        if request.record_id is not None:
            wanted = [request.record_id]
        elif request.network:
            state = self.node.ledger.state()
            wanted = sorted(set(state.records) - set(state.tombstones))
        else:
            wanted = self._owned_or_held()
        rows = []
        repairer = self.node.repairer
        await self.node.records.reach.refresh_sites()  # records are judged by them
        for record_id in wanted:
            health = await repairer.check(record_id, verify=request.verify)
            row = CheckRow(HealthReport.of(health))
            if request.repair and not health.healthy:
                try:
                    repaired = await repairer.repair(record_id)
                except RecordError as exc:
                    row = dataclasses.replace(row, repair_error=str(exc))
                else:
                    after = await repairer.check(record_id, verify=False)
                    row = dataclasses.replace(
                        row, repair=repaired.outcome(), after=HealthReport.of(after)
                    )
            rows.append(row)
        return CheckReply(tuple(rows))

    def _owned_or_held(self) -> list[bytes]:
        state = self.node.ledger.state()
        mine = {r for r, info in state.records.items() if info.owner == self.node.public_key}
        held = {r for r in self.node.shards.holdings.records() if r in state.records}
        return sorted((mine | held) - set(state.tombstones))


async def upload_segments(stream: Replies, size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """The client's Chunk frames as segments (protocol.records.upload cuts them)."""
    segments = UploadSegments(size)
    while not segments.finished:
        request = await stream.receive()
        if request is None:
            raise RecordError("the upload ended before its last chunk; nothing was stored")
        if not isinstance(request, Chunk):
            raise RecordError(f"expected an upload chunk, got {request.OP!r}")
        for segment in segments.add(request.data, request.last):
            yield segment


PROGRESS_EVERY = 8 * 1024 * 1024


async def file_segments(
    source: BinaryIO, size: int, stream: Replies
) -> AsyncIterator[tuple[bytes, bool]]:
    """Read an attached file in `size`-byte segments (in a worker thread), one ahead.

    Tells the client how far it got every PROGRESS_EVERY bytes.
    """
    current, following = await in_worker(_read_two, source, size)  # one hop to start
    done = reported = 0
    while True:
        yield current, not following
        done += len(current)
        if done - reported >= PROGRESS_EVERY:
            await stream.send(UploadProgress(done))
            reported = done
        if not following:
            return
        current = following
        following = await in_worker(read_full, source, size) if len(current) == size else b""


def _read_two(source: BinaryIO, size: int) -> tuple[bytes, bytes]:
    """The first segment and the one after it (empty if the first is the last): a
    put's first segment is read during its placement lookup, in one thread hop."""
    current = read_full(source, size)
    return current, read_full(source, size) if len(current) == size else b""
