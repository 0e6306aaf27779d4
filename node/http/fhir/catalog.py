"""What this node can find for ITI-67: the records it owns or holds a current grant on,
each described from its manifest's encrypted metadata.

A manifest may live on other nodes, so describing a record can cost calls:
descriptions are cached per record id (a record's metadata never changes:
the ledger pins its manifest hash), bounded in entries and bytes, least
recently used out first. Who may see a record is decided anew from the
ledger at every search, so a revoked grant hides a cached record at once.
Uncached records are described a few at a time within a time bound; what
is not described in time is left out of that answer and counted, so one
slow holder cannot hold a search for long. Anyone in the network may grant
this node a junk record; a record that cannot be opened is skipped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

import trio

from node.assembly import Node
from node.http.fhir.resource import Described, describe
from node.logs import RateLimitedLog, get_logger
from node.records.errors import NoGrant, RecordError, short
from protocol.ledger.state import RecordInfo
from storage.codec.crypt import SegmentCipher
from storage.errors import StorageError

log = get_logger("http.fhir")
skipped = RateLimitedLog(log, "fhir record not described", period=60.0, level=logging.INFO)

CACHE_ENTRIES = 10_000
CACHE_BYTES = 64 * 1024 * 1024
DESCRIBE_AT_ONCE = 8
DESCRIBE_WAIT = 10.0  # seconds a search waits for uncached descriptions


class Catalog:
    def __init__(
        self,
        node: Node,
        *,
        entries: int = CACHE_ENTRIES,
        max_bytes: int = CACHE_BYTES,
        wait: float = DESCRIBE_WAIT,
    ) -> None:
        self.node = node
        self.entries = entries
        self.max_bytes = max_bytes
        self.wait = wait
        self._cache: OrderedDict[bytes, Described] = OrderedDict()
        self._bytes = 0

    def visible(self) -> list[RecordInfo]:
        """Records this node reads now (owned or granted, not deleted), oldest first."""
        node = self.node
        state = node.ledger.state()
        now = node.clock_ms()
        me = node.public_key
        found = [
            record
            for record in state.records.values()
            if record.record_id not in state.tombstones
            and state.grant_for(record.record_id, me, now) is not None
        ]
        found.sort(key=lambda r: (r.created_at, r.record_id))
        return found

    def readable(self, record_id: bytes) -> RecordInfo:
        """The record, if this node reads it now; UnknownRecord (404) or NoGrant (403)."""
        records = self.node.records
        record = records.lookup(record_id)
        records.grant_of(record_id, self.node.public_key)
        return record

    def cached(self, record_id: bytes) -> Described | None:
        found = self._cache.get(record_id)
        if found is not None:
            self._cache.move_to_end(record_id)
        return found

    def _keep(self, described: Described) -> None:
        if described.cost > self.max_bytes:
            return
        previous = self._cache.pop(described.record_id, None)
        if previous is not None:
            self._bytes -= previous.cost
        self._cache[described.record_id] = described
        self._bytes += described.cost
        while len(self._cache) > self.entries or self._bytes > self.max_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= dropped.cost

    async def describe(self, record: RecordInfo) -> Described:
        """The record as a DocumentReference (cached); RecordError if it cannot be opened."""
        found = self.cached(record.record_id)
        if found is not None:
            return found
        records = self.node.records
        grant = self.node.ledger.state().grant_for(
            record.record_id, self.node.public_key, self.node.clock_ms()
        )
        if grant is None:
            raise NoGrant(f"no grant on record {short(record.record_id)}")
        manifest = await records.manifest_of(record)
        try:
            cipher = SegmentCipher(records.own_key(grant), record.record_id)
            contents = manifest.contents(cipher)
        except StorageError as exc:  # a junk grant or manifest: anyone may grant us one
            raise RecordError(f"record {short(record.record_id)} does not open: {exc}") from None
        described = describe(record.record_id, record.created_at, contents.size, contents.metadata)
        self._keep(described)
        return described

    async def describe_all(self, records: Iterable[RecordInfo]) -> tuple[list[Described], int]:
        """Descriptions of `records` (in their order) and how many could not be had in time."""
        wanted = list(records)
        found: list[Described | None] = [self.cached(r.record_id) for r in wanted]
        missing = [i for i, d in enumerate(found) if d is None]
        if missing:
            limiter = trio.CapacityLimiter(DESCRIBE_AT_ONCE)

            async def one(position: int) -> None:
                async with limiter:
                    try:
                        found[position] = await self.describe(wanted[position])
                    except RecordError as exc:
                        skipped.note(
                            type(exc).__name__,
                            record=short(wanted[position].record_id),
                            detail=str(exc)[:120],
                        )

            with trio.move_on_after(self.wait):
                async with trio.open_nursery() as nursery:
                    for position in missing:
                        nursery.start_soon(one, position)
        described = [d for d in found if d is not None]
        return described, len(wanted) - len(described)
