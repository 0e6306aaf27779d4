"""What each control request does to the node.

Simple requests answer one map. put reads the upload as Chunk frames and
cuts it into segments itself (a client may send chunks of any size); get
streams either plaintext (the node reads with its own grant) or ciphertext
plus the reader's sealed key, so a person's private key stays in the CLI
that holds it. Record keys never cross the socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO, Protocol

import trio

from node.assembly import Node
from node.ledger.service import LedgerError
from node.logs import event, get_logger
from node.offload import in_worker
from node.records.fetch import TooFewShards
from node.records.service import RecordError
from protocol.control import (
    Check,
    Chunk,
    ControlRequest,
    Delete,
    FeedHead,
    Get,
    Grant,
    Ledger,
    ListRecords,
    Peers,
    Put,
    Revoke,
    Status,
    Submit,
)
from protocol.ids import node_id
from protocol.ledger.entries import Entry
from protocol.records.upload import UploadSegments
from storage.codec.crypt import SegmentCipher
from storage.codec.encoder import read_full
from storage.codec.manifest import RecordMetadata
from storage.errors import StorageError

log = get_logger("control")
OPERATOR_ERRORS: tuple[type[Exception], ...] = (
    RecordError,
    LedgerError,
    TooFewShards,
    StorageError,
)
Reply = dict[str, Any]


class Replies(Protocol):
    async def receive(self) -> ControlRequest | None: ...

    async def send(self, reply: Reply) -> None: ...

    def take_fd(self) -> int | None: ...


class ControlOps:
    def __init__(self, node: Node, *, started: float) -> None:
        self.node = node
        self.started = started
        self._simple: dict[type, Callable[[Any], Awaitable[Reply]]] = {
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
        }

    async def handle(self, request: ControlRequest, stream: Replies) -> None:
        if isinstance(request, Put):
            await stream.send(await self.put(request, stream))
        elif isinstance(request, Get):
            await self.get(request, stream)
        elif type(request) in self._simple:
            await stream.send({"ok": True, **await self._simple[type(request)](request)})
        else:
            raise RecordError(f"a {request.OP} frame cannot start a request")

    # -- node --------------------------------------------------------------------

    async def status(self, request: Status) -> Reply:
        node = self.node
        state = node.ledger.state()
        config = node.parts.config.storage
        store = node.parts.store
        return {
            "public_key": node.public_key.hex(),
            "node_id": node_id(node.public_key).hex(),
            "address": node.contact.address,
            "site": node.shards.site,
            "uptime_s": round(trio.current_time() - self.started, 1),
            "contacts": len(node.dht.routing),
            "connections": len(node.manager.peers),
            "ledger_entries": len(node.ledger.book),
            "records": len(state.records) - len(state.tombstones),
            "records_held": len(node.shards.holdings.records()),
            "store_used_bytes": store.used_bytes,
            "store_quota_bytes": store.capacity or 0,
            "k": config.k,
            "n": config.n,
            "happy": config.happy,
            "segment_size": config.segment_size,
            "repair_passes": node.upkeep.passes,
        }

    async def peers(self, request: Peers) -> Reply:
        contacts = self.node.dht.routing.contacts()
        sites: dict[bytes, str | None] = {}

        async def ask(contact: Any) -> None:
            sites[contact.public_key] = await self.node.records.site_of(contact)

        async with trio.open_nursery() as nursery:
            for contact in contacts:
                nursery.start_soon(ask, contact)
        return {
            "peers": [
                {
                    "public_key": c.public_key.hex(),
                    "node_id": c.node_id.hex(),
                    "address": c.address,
                    "site": sites.get(c.public_key),
                    "reachable": sites.get(c.public_key) is not None,
                }
                for c in sorted(contacts, key=lambda c: c.node_id)
            ]
        }

    # -- records -------------------------------------------------------------------

    async def put(self, request: Put, stream: Replies) -> Reply:
        size = self.node.records.config.segment_size
        with contextlib.ExitStack() as attached:
            segments: AsyncIterator[tuple[bytes, bool]]
            if not request.attached:
                segments = upload_segments(stream, size)
            else:
                fd = stream.take_fd()
                if fd is None:
                    raise RecordError("the put said a file was attached, but none came")
                source = attached.enter_context(os.fdopen(fd, "rb", buffering=0))
                segments = file_segments(source, size, stream)
            event(log, logging.INFO, "upload started", grantees=len(request.grantees))
            await stream.send({"ok": True, "chunk_size": size})
            metadata = RecordMetadata(
                content_type=request.content_type or "application/octet-stream",
                filename=request.filename,
                patient_ref=request.patient.hex() if request.patient else "",
            )
            grantees = [*([request.patient] if request.patient else []), *request.grantees]
            result = await self.node.records.put(
                segments, metadata=metadata, grantees=grantees, expires_at=request.expires_at
            )
        return {
            "ok": True,
            "record_id": result.record_id.hex(),
            "size": result.manifest.size,
            "segments": result.manifest.segment_count,
            "holders": result.confirmed,
            "grantees": [g.hex() for g in dict.fromkeys([self.node.public_key, *grantees])],
        }

    async def get(self, request: Get, stream: Replies) -> None:
        records = self.node.records
        handle = await records.open(request.record_id, request.reader)
        manifest = handle.manifest
        header: Reply = {"ok": True, "size": manifest.size, "segments": manifest.segment_count}
        if request.reader is None:
            record_key = records.record_key(handle)
            metadata = manifest.metadata(SegmentCipher(record_key, manifest.record_id))
            await stream.send(
                header | {"filename": metadata.filename, "type": metadata.content_type}
            )
            async for plaintext in records.plaintext(handle, record_key):
                await stream.send({"ok": True, "data": plaintext})
        else:
            await stream.send(
                header | {"manifest": manifest.encode(), "sealed_key": handle.grant.sealed_key}
            )
            async for segment, ciphertext in handle.fetcher.ciphertext():
                await stream.send({"ok": True, "segment": segment, "data": ciphertext})
        await stream.send({"ok": True, "done": True})

    async def list_records(self, request: ListRecords) -> Reply:
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
                {
                    "record_id": record.record_id.hex(),
                    "owner": record.owner.hex(),
                    "size": record.size,
                    "k": record.k,
                    "n": record.n,
                    "created_at": record.created_at,
                    "grantees": [
                        g.grantee.hex() for g in state.grants_of(record.record_id) if g.active(now)
                    ],
                    "attested_by": [a.hex() for a in state.attestations.get(record.record_id, ())],
                }
            )
        return {"records": rows}

    async def grant(self, request: Grant) -> Reply:
        await self.node.records.grant(request.record_id, request.grantee, request.expires_at)
        return {}

    async def revoke(self, request: Revoke) -> Reply:
        await self.node.records.revoke(request.record_id, request.grantee)
        return {}

    async def delete(self, request: Delete) -> Reply:
        await self.node.records.delete(request.record_id)
        return {}

    # -- ledger ------------------------------------------------------------------------

    async def feed_head(self, request: FeedHead) -> Reply:
        record = self.node.records.lookup(request.record_id)
        book = self.node.ledger.book
        head = book.head_entry(request.author)
        if head is None and request.author in book.flagged:
            raise LedgerError("this key's ledger feed is forked; it cannot be extended")
        return {
            "seq": 1 if head is None else head.seq + 1,
            "prev": b"" if head is None else head.hash,
            "manifest_hash": record.manifest_hash,
        }

    async def submit(self, request: Submit) -> Reply:
        await self.node.records.submit(request.entry)
        return {}

    async def ledger(self, request: Ledger) -> Reply:
        entries = self.node.ledger.book.entries()
        if request.record_id is not None:
            entries = [e for e in entries if e.record_id == request.record_id]
        entries.sort(key=lambda e: (e.timestamp, e.author, e.seq))
        if request.tail:
            entries = entries[-request.tail :]
        rejected = self.node.ledger.state().rejected
        return {"entries": [describe_entry(e, rejected.get(e.hash)) for e in entries]}

    async def check(self, request: Check) -> Reply:
        wanted = [request.record_id] if request.record_id is not None else self._owned_or_held()
        reports = []
        repairer = self.node.repairer
        for record_id in wanted:
            health = await repairer.check(record_id, verify=request.verify)
            report: Reply = {"health": health.as_dict()}
            if request.repair and not health.healthy:
                try:
                    repaired = await repairer.repair(record_id)
                except RecordError as exc:
                    report["repair"] = {"error": str(exc)}
                else:
                    report["repair"] = repaired.as_dict()
                    report["after"] = (await repairer.check(record_id, verify=False)).as_dict()
            reports.append(report)
        return {"records": reports}

    def _owned_or_held(self) -> list[bytes]:
        state = self.node.ledger.state()
        mine = {r for r, info in state.records.items() if info.owner == self.node.public_key}
        held = {r for r in self.node.shards.holdings.records() if r in state.records}
        return sorted((mine | held) - set(state.tombstones))


def describe_entry(entry: Entry, rejected: str | None) -> Reply:
    """An entry for display: its fields, keys in hex, sealed keys left out."""
    body: Reply = {}
    for name, value in vars(entry.body).items():
        if name == "sealed_key":
            continue
        body[name] = value.hex() if isinstance(value, bytes) else value
    return {
        "hash": entry.hash.hex(),
        "author": entry.author.hex(),
        "seq": entry.seq,
        "timestamp": entry.timestamp,
        "type": str(entry.type),
        "body": body,
        "rejected": rejected,
    }


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
    current = await in_worker(read_full, source, size)
    done = reported = 0
    while True:
        following = await in_worker(read_full, source, size) if len(current) == size else b""
        yield current, not following
        done += len(current)
        if done - reported >= PROGRESS_EVERY:
            await stream.send({"ok": True, "progress": done})
            reported = done
        if not following:
            return
        current = following
