"""Keeping held records whole and deleted records gone, in the background.

Tombstones: whenever the ledger accepts a tombstone (and once at start),
this node deletes its shards of every tombstoned record it holds.

Scrub: each pass first reads back `scrub_bytes` of held blocks (resuming
where the last pass stopped) and demotes an index with a missing or corrupt
block, so damage is found without an operator running `check`.

Audit: the owner's node checks its records' holders' claims with one random
block per claimed index (node/records/audit.py), read by permit, up to
`audit_bytes` per pass over records taken in a random order (held ones and
those it holds nothing of); a grantee's node that holds an index audits now
and then. An index whose holder fails is rebuilt elsewhere by the auditor,
and the holder is passed over. Other holders cannot audit: a holder proof
buys no blocks of a healthy record (node/records/views.py).

Repair: every `repair_interval` seconds this node learns the sites of its
routing table's contacts, then each record it holds is surveyed (also for
surviving the loss of any one site, where the network has enough sites);
only its coordinator repairs it, so holders do not race each other to
rebuild the same shards. The coordinator is the first of its live holders
in a per-record order (protocol.records.repair) until the record has stayed
unhealthy, as this node saw it, for `deadline` seconds: then the next one
takes over, and so on, so a silent first holder (dead, buggy or compromised)
cannot keep a record unrepaired. Since when each held record has been seen
unhealthy is kept in memory only (one number per held record, forgotten
when it is healthy again or no longer held; a restart starts the count
afresh, which only delays a takeover by a deadline).

A record the ledger does not know yet (a put still running, or
gossip not arrived) is left alone; `unrecorded_grace` after its last block
arrived it is taken for an upload that never finished (or shards a member
sent and never recorded) and its shards are deleted. An incomplete index
of a known record (a transfer to this node given up) is deleted after the
longer `orphan_grace`. Neither happens before the ledger caught up.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Container
from dataclasses import dataclass

import trio

from node.ledger.service import LedgerService
from node.logs import RateLimitedLog, event, get_logger, short_key
from node.offload import in_worker
from node.records.errors import RecordError, short
from node.records.repair import Repairer, RepairReport
from node.records.shard_service import ShardService
from node.records.views import RecordViews
from protocol.ledger.entries import Entry, TombstoneBody
from protocol.records.health import RecordHealth
from protocol.records.repair import coordinator, passed_over, triage

log = get_logger("upkeep")

# Records surveyed concurrently in a pass: a survey mostly waits (a DHT lookup,
# then every candidate holder, with timeouts for dead ones), so a node holding
# many records needs several in flight to finish a pass within its interval.
SURVEYS_AT_ONCE = 8
# A holder passed over for not repairing is named once an hour per holder.
TAKEOVER_LOG_PERIOD = 3600.0


@dataclass(frozen=True)
class PassSummary:
    """What a finished repair pass saw of the records it surveyed (held ones, and owned
    ones it audited), for the status page: each record counts once, in one column."""

    ended_ms: int  # wall clock
    duration_s: float
    healthy: int = 0
    below_n: int = 0  # readable, fewer than n distinct holders
    site_unsafe: int = 0  # n holders, but the loss of one site would make it unreadable
    unreadable: int = 0  # fewer than k indices found
    skipped: int = 0  # the survey failed (see the log's "repair skipped")
    repaired: int = 0  # repairs this node ran

    @property
    def surveyed(self) -> int:
        return self.healthy + self.below_n + self.site_unsafe + self.unreadable + self.skipped


class _Tally:
    """A pass's verdicts while it runs: one per record (a repair that fails after its
    survey leaves the survey's verdict)."""

    KINDS = ("healthy", "below_n", "site_unsafe", "unreadable", "skipped")

    def __init__(self) -> None:
        self.kinds: dict[bytes, str] = {}
        self.healths: dict[bytes, RecordHealth] = {}

    def saw(self, record_id: bytes, health: RecordHealth) -> None:
        self.healths[record_id] = health
        if health.healthy:
            kind = "healthy"
        elif not health.readable:
            kind = "unreadable"
        elif health.distinct_hosts < health.n:
            kind = "below_n"
        else:
            kind = "site_unsafe"
        self.kinds[record_id] = kind

    def skipped(self, record_id: bytes) -> None:
        self.kinds.setdefault(record_id, "skipped")

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(self.KINDS, 0)
        for kind in self.kinds.values():
            found[kind] += 1
        return found


class RecordUpkeep:
    def __init__(
        self,
        *,
        repairer: Repairer,
        shards: ShardService,
        ledger: LedgerService,
        interval: float,
        orphan_grace: float,
        unrecorded_grace: float | None = None,
        scrub_bytes: int = 0,
        audit_bytes: int = 0,
        deadline: float = math.inf,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.repairer = repairer
        self.shards = shards
        self.ledger = ledger
        self.interval = interval
        self.scrub_bytes = scrub_bytes
        self.audit_bytes = audit_bytes
        self._audit_left = 0  # of this pass's audit budget
        self._rng = random.Random(0)  # a fresh unpredictable one each pass
        self.orphan_grace_ms = int(orphan_grace * 1000)
        self.unrecorded_grace_ms = int(
            (orphan_grace if unrecorded_grace is None else unrecorded_grace) * 1000
        )
        self.me = repairer.records.public_key
        self.deadline = deadline
        self.clock = clock
        self._unhealthy_since: dict[bytes, float] = {}  # held record -> first seen so
        self._takeovers = RateLimitedLog(log, "repair taken over", period=TAKEOVER_LOG_PERIOD)
        self._tombstoned = trio.Event()
        self.passes = 0
        self.last_pass: PassSummary | None = None
        ledger.subscribe(self._on_entries)

    def _on_entries(self, entries: list[Entry]) -> None:
        if any(isinstance(e.body, TombstoneBody) for e in entries):
            self._tombstoned.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.sweep_tombstones()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_tombstones)
            nursery.start_soon(self._repair_periodically)
            if self.repairer.views is not None:
                nursery.start_soon(self._survey_on_request, self.repairer.views)
            task_status.started()

    async def _watch_tombstones(self) -> None:
        while True:
            await self._tombstoned.wait()
            self._tombstoned = trio.Event()  # set again by any tombstone arriving meanwhile
            await self.sweep_tombstones()

    async def sweep_tombstones(self) -> int:
        """Delete the shards of every tombstoned record held; returns records deleted."""
        tombstones = self.ledger.state().tombstones
        doomed = [r for r in self.shards.holdings.records() if r in tombstones]
        for record_id in doomed:
            await self.shards.delete_record(record_id)
        return len(doomed)

    async def _survey_on_request(self, views: RecordViews) -> None:
        """Survey a held record again when a repair read found this node's view of it
        stale (node/records/views.py), SURVEYS_AT_ONCE at a time: promptly, so the
        repairer's retries find the need seen here."""
        limiter = trio.CapacityLimiter(SURVEYS_AT_ONCE)
        async with trio.open_nursery() as nursery:
            while True:
                record_id = await views.wanted()
                if record_id in self.ledger.state().records:
                    borrower = object()  # one per survey: a record may be wanted again
                    await limiter.acquire_on_behalf_of(borrower)
                    nursery.start_soon(self._survey_for_reads, views, record_id, limiter, borrower)

    async def _survey_for_reads(
        self,
        views: RecordViews,
        record_id: bytes,
        limiter: trio.CapacityLimiter,
        borrower: object,
    ) -> None:
        try:
            # The network's sites first, as a pass does: the repairer may be copying
            # the record to a site that came back.
            await self.repairer.records.reach.refresh_sites()
            await self.repairer.survey(record_id, verify=False)
        except RecordError as exc:
            event(log, logging.INFO, "survey skipped", record=short(record_id), reason=str(exc))
        finally:
            limiter.release_on_behalf_of(borrower)

    async def _repair_periodically(self) -> None:
        while True:
            await trio.sleep(self.interval)
            try:
                await self.run_pass()
            except Exception:  # a bug in one pass must not stop the node; the next pass retries
                log.exception("repair pass failed")

    async def run_pass(self) -> list[RepairReport]:
        """Survey every held record once; repair those this node coordinates."""
        began = self.clock()
        tally = _Tally()  # this pass's own: a test may run a pass beside the periodic one
        await self.sweep_tombstones()
        if self.scrub_bytes:
            checked, damaged = await self.shards.scrub_some(self.scrub_bytes)
            for record_id, index in damaged:
                event(
                    log,
                    logging.WARNING,
                    "damaged shard found",
                    record=short(record_id),
                    index=index,
                    found_by="scrub",
                    blocks_checked=checked,
                )
        known = self.ledger.state().records
        if self.ledger.caught_up:  # else a record may just not have reached this ledger yet
            now = self.ledger.clock_ms()
            await self.shards.collect(
                known, now - self.unrecorded_grace_ms, now - self.orphan_grace_ms
            )
        # The network's sites, known before any record is judged by them: a site
        # that is back after an outage makes records put meanwhile need spreading.
        await self.repairer.records.reach.refresh_sites()
        reports: list[RepairReport] = []
        held = [r for r in self.shards.holdings.records() if r in known]
        # A random order: the audit budget reaches different records each pass.
        self._rng = random.Random(self.repairer.records.random_bytes(16))
        self._rng.shuffle(held)
        self._audit_left = self.audit_bytes
        for gone in self._unhealthy_since.keys() - set(held):  # no longer held
            del self._unhealthy_since[gone]
        if self.repairer.views is not None:
            self.repairer.views.keep_only(set(held))
        queue = iter(held)

        async def worker() -> None:
            for record_id in queue:  # shared by the workers: each record once
                try:
                    report = await self._repair_if_coordinator(record_id, tally)
                except RecordError as exc:
                    tally.skipped(record_id)
                    event(
                        log,
                        logging.WARNING,
                        "repair skipped",
                        record=short(record_id),
                        reason=str(exc),
                    )
                    continue
                if report is not None:
                    reports.append(report)

        async with trio.open_nursery() as nursery:
            for _ in range(SURVEYS_AT_ONCE):
                nursery.start_soon(worker)
        reports += await self._audit_own_records(set(held), tally)
        self.passes += 1
        self.last_pass = PassSummary(
            ended_ms=self.ledger.clock_ms(),
            duration_s=max(0.0, self.clock() - began),
            repaired=len(reports),
            **tally.counts(),
        )
        await self._measure_pass(began, known, len(held), reports, tally)
        return reports

    async def _measure_pass(
        self,
        started: float,
        known: Container[bytes],
        held: int,
        reports: list[RepairReport],
        tally: _Tally,
    ) -> None:
        """Tell the metrics what this pass saw: a scrape reads these, never scans. Records
        below n are counted after this pass's own repairs (the status page's summary shows
        the surveys before them)."""
        placed = {r.before.record_id: len(r.placed) for r in reports}
        below_n = sum(
            1
            for record_id, health in tally.healths.items()
            if health.distinct_hosts + placed.get(record_id, 0) < health.n
        )
        orphans = await in_worker(self.shards.orphans, known)
        self.repairer.records.metrics.repair.pass_done(
            seconds=self.clock() - started,
            at=self.ledger.clock_ms() / 1000,
            held=held,
            below_n=below_n,
            orphans=orphans,
        )

    async def _audit_own_records(self, held: set[bytes], tally: _Tally) -> list[RepairReport]:
        """Audit records this node owns and holds nothing of, as far as the budget goes,
        in a random order; repair those whose audit finds a claim that fails. Holders
        cannot audit each other (a proof buys no blocks of a healthy record), so the
        owner is who finds a holder that keeps nothing."""
        state = self.ledger.state()
        owned = [
            r
            for r, info in state.records.items()
            if info.owner == self.me and r not in held and r not in state.tombstones
        ]
        self._rng.shuffle(owned)
        reports: list[RepairReport] = []
        for record_id in owned:
            if self._audit_left <= 0:
                break
            try:
                survey = await self.repairer.survey(record_id, verify=False, audit=True)
                self._audit_left -= max(survey.audited_bytes, 1)
                tally.saw(record_id, survey.health)
                if survey.failed_audit and not survey.health.healthy:
                    reports.append(await self.repairer.repair(record_id, survey))
            except RecordError as exc:
                tally.skipped(record_id)
                event(
                    log, logging.WARNING, "audit skipped", record=short(record_id), reason=str(exc)
                )
        return reports

    async def _repair_if_coordinator(self, record_id: bytes, tally: _Tally) -> RepairReport | None:
        survey = await self.repairer.survey(record_id, verify=False)
        seen = survey.health  # as the holders say: whose turn it is
        unhealthy_for = self._seen_unhealthy_for(record_id, seen)
        mine = coordinator(seen, unhealthy_for, self.deadline) == self.me
        # The holders' word is checked, as far as the budget goes, by the nodes that
        # read the record by permit (audits hand out blocks): its owner's node always,
        # a grantee's node that holds an index now and then. A node whose audit finds a
        # claim that fails repairs the record itself.
        others = max(1, len(seen.holders))
        permitted = self.repairer.records.permitted(record_id)
        owner = self.ledger.state().records[record_id].owner == self.me
        if self._audit_left > 0 and permitted and (owner or self._rng.random() * others < 1):
            survey = await self.repairer.audit(survey)
            self._audit_left -= max(survey.audited_bytes, 1)
            self._seen_unhealthy_for(record_id, survey.health)
            mine = mine or bool(survey.failed_audit)
        tally.saw(record_id, survey.health)
        if not mine or survey.health.healthy:
            return None
        silent = passed_over(seen, unhealthy_for, self.deadline)
        if silent is not None:
            self._takeovers.note(
                "coordinator did not repair within the deadline",
                short_key(silent),
                record=short(record_id),
                unhealthy_for=round(unhealthy_for, 1),
            )
        return await self.repairer.repair(record_id, survey)

    def _seen_unhealthy_for(self, record_id: bytes, health: RecordHealth) -> float:
        """Seconds this node has seen the record unhealthy; the count starts when it is
        first seen repairable, goes on while it is unreadable, and ends when healthy."""
        now = self.clock()
        if health.healthy:
            self._unhealthy_since.pop(record_id, None)
            return 0.0
        if triage(health) is None:
            since = self._unhealthy_since.setdefault(record_id, now)
        else:
            since = self._unhealthy_since.get(record_id, now)
        return max(0.0, now - since)
