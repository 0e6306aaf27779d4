"""What records cost and how they fail: puts, gets and repair, counted where they happen.

RecordService counts puts and gets (so the control socket and the HTTP API
count alike), the repairer what it rebuilt, the upkeep loop each pass. A
failure is labelled by one of a few fixed reasons (node.records.errors),
never by its message: messages name records and keys. Each instance registers
into the registry it is given (a node's own; never the process-wide default,
since tests and simulations run many nodes in one process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from node.records.errors import (
    BAD_REQUEST,
    ERROR,
    NETWORK_TOO_SMALL,
    NO_GRANT,
    NO_MANIFEST,
    NOT_FOUND,
    TOO_FEW_HOLDERS,
    RecordError,
)
from node.records.fetch import TooFewShards

CANCELLED = "cancelled"  # the caller went away, or the node is stopping
TOO_FEW_SHARDS = "too_few_shards"  # some segment could not reach k verified blocks
PUT_REASONS = (BAD_REQUEST, NETWORK_TOO_SMALL, TOO_FEW_HOLDERS, CANCELLED, ERROR)
GET_REASONS = (BAD_REQUEST, NOT_FOUND, NO_GRANT, NO_MANIFEST, TOO_FEW_SHARDS, CANCELLED, ERROR)
# Seconds: a small record on a LAN takes milliseconds, a large one over a WAN minutes.
TRANSFER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
PASS_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def failure_reason(exc: BaseException, allowed: Sequence[str]) -> str:
    """The label of a failure: one of `allowed` (ERROR for anything else)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled)]
        if not leaves:
            return CANCELLED
        return failure_reason(leaves[0], allowed) if len(leaves) == 1 else ERROR
    if isinstance(exc, trio.Cancelled | GeneratorExit):
        reason = CANCELLED
    elif isinstance(exc, RecordError):
        reason = exc.reason
    elif isinstance(exc, TooFewShards):
        reason = TOO_FEW_SHARDS
    else:
        reason = ERROR
    return reason if reason in allowed else ERROR


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


class RecordMetrics:
    """Counters and histograms of puts, gets and repair, in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.puts = Counter(
            "medvault_puts", "Puts finished on this node, stored or failed.", registry=registry
        )
        self.put_failures = Counter(
            "medvault_put_failures",
            "Puts that failed (nothing was recorded), by reason.",
            ["reason"],
            registry=registry,
        )
        self.puts_degraded = Counter(
            "medvault_puts_degraded",
            "Puts stored with fewer than n distinct holders or not spread over sites.",
            registry=registry,
        )
        self.put_bytes = Counter(
            "medvault_put_bytes",
            "Bytes of records stored by puts (before padding).",
            registry=registry,
        )
        self.put_seconds = Histogram(
            "medvault_put_duration_seconds",
            "Time from the start of a put to its ledger entry, puts that stored.",
            buckets=TRANSFER_BUCKETS,
            registry=registry,
        )
        self.gets = Counter(
            "medvault_gets", "Gets finished on this node, delivered or failed.", registry=registry
        )
        self.get_failures = Counter(
            "medvault_get_failures", "Gets that failed, by reason.", ["reason"], registry=registry
        )
        self.get_bytes = Counter(
            "medvault_get_bytes",
            "Bytes delivered by gets (plaintext; ciphertext for reads as another key).",
            registry=registry,
        )
        self.get_seconds = Histogram(
            "medvault_get_duration_seconds",
            "Time from opening a record to its last byte delivered, gets that completed.",
            buckets=TRANSFER_BUCKETS,
            registry=registry,
        )
        for reason in PUT_REASONS:  # every series exists from the start, at 0
            self.put_failures.labels(reason)
        for reason in GET_REASONS:
            self.get_failures.labels(reason)
        self.repair = RepairMetrics(registry)

    def put_stored(self, size: int, degraded: bool, seconds: float) -> None:
        self.puts.inc()
        self.put_bytes.inc(size)
        self.put_seconds.observe(seconds)
        if degraded:
            self.puts_degraded.inc()

    def put_failed(self, exc: BaseException) -> None:
        self.puts.inc()
        self.put_failures.labels(failure_reason(exc, PUT_REASONS)).inc()

    def get_started(self) -> GetMeter:
        return GetMeter(self, trio.current_time())


class GetMeter:
    """One get, from opening the record to its last byte: finished or failed once.

    The fetcher counts ciphertext as it delivers it; a plaintext read sets
    `plaintext` and counts what it decrypts instead. Whichever of the two ends
    first (a reader that stops iterating ends it as cancelled) decides.
    """

    def __init__(self, metrics: RecordMetrics, started: float) -> None:
        self.metrics = metrics
        self.started = started
        self.plaintext = False
        self.ended = False
        self._at_end: list[Callable[[], None]] = []

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when the get finishes or fails (at once if it has)."""
        if self.ended:
            callback()
        else:
            self._at_end.append(callback)

    def moved(self, size: int) -> None:
        self.metrics.get_bytes.inc(size)

    def finished(self) -> None:
        if not self.ended:
            self.ended = True
            self.metrics.gets.inc()
            self.metrics.get_seconds.observe(trio.current_time() - self.started)
            self._end()

    def failed(self, exc: BaseException) -> None:
        if not self.ended:
            self.ended = True
            self.metrics.gets.inc()
            self.metrics.get_failures.labels(failure_reason(exc, GET_REASONS)).inc()
            self._end()

    def _end(self) -> None:
        callbacks, self._at_end = self._at_end, []
        for callback in callbacks:
            callback()


class RepairMetrics:
    """What repair did, and what the last upkeep pass saw (values a scrape must not scan for)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.passes = Counter(
            "medvault_repair_passes",
            "Upkeep passes (scrub, collect, survey, repair) run.",
            registry=registry,
        )
        self.pass_seconds = Histogram(
            "medvault_repair_pass_duration_seconds",
            "Duration of an upkeep pass.",
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self.last_pass = Gauge(
            "medvault_repair_last_pass_timestamp_seconds",
            "Unix time the last upkeep pass ended (0: none yet).",
            registry=registry,
        )
        self.below_n = Gauge(
            "medvault_records_below_n",
            "Held records with fewer than n distinct holders after the last pass's repairs.",
            registry=registry,
        )
        self.held = Gauge(
            "medvault_records_held", "Records this node held at the last pass.", registry=registry
        )
        self.rebuilt = Counter(
            "medvault_repair_rebuilt_shards",
            "Shard indices rebuilt onto new holders (confirmed), by repair.",
            registry=registry,
        )
        self.moved = Counter(
            "medvault_repair_bytes",
            "Shard bytes repair rebuilt onto new holders (confirmed).",
            registry=registry,
        )
        self.failed = Counter(
            "medvault_repair_target_failures",
            "New holders that failed to take a rebuilt index.",
            registry=registry,
        )
        self.orphan_pieces = Gauge(
            "medvault_store_orphan_pieces",
            "Records or indices held that no finished upload accounts for, at the last pass.",
            registry=registry,
        )
        self.orphan_bytes = Gauge(
            "medvault_store_orphan_bytes",
            "Bytes of those orphan pieces, at the last pass.",
            registry=registry,
        )

    def repaired(self, shards: int, size: int, failures: int) -> None:
        self.rebuilt.inc(shards)
        self.moved.inc(size)
        self.failed.inc(failures)

    def pass_done(
        self,
        *,
        seconds: float,
        at: float,
        held: int,
        below_n: int,
        orphans: tuple[int, int],
    ) -> None:
        self.passes.inc()
        self.pass_seconds.observe(seconds)
        self.last_pass.set(at)
        self.held.set(held)
        self.below_n.set(below_n)
        self.orphan_pieces.set(orphans[0])
        self.orphan_bytes.set(orphans[1])
