"""Every read reaches the ledger: the reader's node logs its statement, holders witness.

The reader's node logs the access statement of every read it starts
(`reading`, at once). A dishonest reader's node could skip that, so a holder
that served blocks under a statement (`served`) logs the same statement
itself when its ledger does not show that read `grace` seconds later. Both go
through bounded queues (a flood of reads costs at most MAX_QUEUED pending
entries; beyond it a read is not witnessed and that is logged, rate-limited),
a holder witnesses a read id at most once (remembered for MAX_REMEMBERED
reads), and every entry counts against this node's feed rates like any other.

Not witnessed: a record's owner node reading its own record for operations
(audits, repair, a put's top-up: purpose HOPERAT, reader = node = owner). It
discloses nothing (that node wrote the record) and would otherwise log every
audit of every record in every repair pass.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import trio

from node.ledger.service import LedgerError, LedgerService
from node.logs import RateLimitedLog, event, get_logger
from protocol.ledger.entries import AccessBody
from protocol.records.permit import ReadPermit, decode
from protocol.records.purpose import Purpose

log = get_logger("reads")
GRACE = 60.0  # seconds a holder waits for the reader's node to log a read
MAX_QUEUED = 1024  # statements waiting to be logged, per queue
MAX_REMEMBERED = 4096  # read ids this holder already witnessed


class AccessWitness:
    def __init__(self, *, ledger: LedgerService, grace: float = GRACE) -> None:
        self.ledger = ledger
        self.grace = grace
        self._now_send, self._now_receive = trio.open_memory_channel[bytes](MAX_QUEUED)
        self._later_send, self._later_receive = trio.open_memory_channel[tuple[float, bytes]](
            MAX_QUEUED
        )
        self._seen: collections.OrderedDict[tuple[bytes, bytes, bytes], None] = (
            collections.OrderedDict()
        )
        self.witnessed = 0  # entries this node logged for reads of others' nodes
        self._dropped = RateLimitedLog(log, "read not logged", period=60.0)

    def reading(self, statement: bytes) -> None:
        """This node starts a read under `statement`: log it now (in the background)."""
        try:
            self._now_send.send_nowait(statement)
        except trio.WouldBlock:
            self._dropped.note("queue full", queued=MAX_QUEUED)

    def served(self, statement: ReadPermit, raw: bytes, owner: bytes) -> None:
        """Blocks were served under `statement`: log it unless the ledger shows it soon."""
        if statement.purpose is Purpose.HOPERAT and statement.reader == statement.node == owner:
            return  # the owner's node keeping its own record: see the module's note
        key = (statement.record_id, statement.reader, statement.read_id)
        if key in self._seen:
            return
        self._seen[key] = None
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        try:
            self._later_send.send_nowait((trio.current_time() + self.grace, raw))
        except trio.WouldBlock:
            self._dropped.note("queue full", queued=MAX_QUEUED)

    def logged(self, statement: ReadPermit, by: bytes | None = None) -> bool:
        """Whether the ledger shows this read (logged by `by`, or by anyone)."""
        reads = self.ledger.state().accesses.get(statement.record_id, {})
        found = reads.get((statement.reader, statement.read_id))
        return found is not None and (by is None or by in found.loggers)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._log_now)
            nursery.start_soon(self._log_later)
            task_status.started()

    async def _log_now(self) -> None:
        async for raw in self._now_receive:
            await self._append(raw, by=self.ledger.public_key)

    async def _log_later(self) -> None:
        async for due, raw in self._later_receive:
            await trio.sleep_until(due)
            if await self._append(raw, by=None):
                self.witnessed += 1

    async def _append(self, raw: bytes, *, by: bytes | None) -> bool:
        try:
            body = AccessBody(decode(raw).record_id, raw)
            if self.logged(body.decoded, by):
                return False
            await self.ledger.append(body)
        except (LedgerError, ValueError) as exc:
            self._dropped.note(type(exc).__name__, why=str(exc)[:200])
            return False
        event(log, logging.DEBUG, "read logged", record=body.record_id.hex()[:16])
        return True


Witness = Callable[[ReadPermit, bytes, bytes], None]  # (statement, its bytes, record owner)
