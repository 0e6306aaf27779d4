"""Repairing a record: rebuild its missing shard indices onto new holders.

The survey asks every candidate holder what it holds (RecordHealth);
protocol.records.repair decides which indices go to which of the nodes
closest to the record's key. The blocks are rebuilt from any k verified
blocks per segment (they are ciphertext: repair needs no record key); every
rebuilt block is checked against the manifest before it is sent, and the new
holders check again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.logs import event, get_logger
from node.records.fetch import BlockFetcher, TooFewShards
from node.records.service import RecordError, RecordService, short
from node.records.transfer import HolderSender, holder_senders, send_to_holders
from protocol.control.replies import RepairOutcome
from protocol.dht.contact import Contact
from protocol.ids import record_dht_key
from protocol.records.health import RecordHealth
from protocol.records.placement import Candidate
from protocol.records.repair import plan_repair, triage
from storage.codec.erasure import ReedSolomon
from storage.codec.manifest import Manifest

log = get_logger("repair")


@dataclass(frozen=True)
class Survey:
    health: RecordHealth
    contacts: dict[bytes, Contact]


@dataclass(frozen=True)
class RepairReport:
    before: RecordHealth
    placed: dict[int, bytes] = field(default_factory=dict)  # index -> new holder (confirmed)
    failed: dict[bytes, str] = field(default_factory=dict)  # target -> why
    note: str = ""

    def outcome(self) -> RepairOutcome:
        return RepairOutcome(
            placed={str(i): node for i, node in self.placed.items()},
            failed={node.hex(): why for node, why in self.failed.items()},
            note=self.note,
        )


class Repairer:
    def __init__(self, records: RecordService) -> None:
        self.records = records

    async def survey(self, record_id: bytes, verify: bool) -> Survey:
        record = self.records.lookup(record_id)
        holdings = await self.records.holdings_of(record_id, verify)
        health = RecordHealth.of(
            record_id,
            record.k,
            record.n,
            [(h.contact.public_key, h.found) for h in holdings],
        )
        return Survey(health, {h.contact.public_key: h.contact for h in holdings})

    async def check(self, record_id: bytes, verify: bool = True) -> RecordHealth:
        return (await self.survey(record_id, verify)).health

    async def repair(self, record_id: bytes, survey: Survey | None = None) -> RepairReport:
        """Bring the record back to n distinct holders, as far as the network allows."""
        record = self.records.lookup(record_id)
        survey = survey or await self.survey(record_id, verify=False)
        health = survey.health
        note = triage(health)
        if note is not None:
            return RepairReport(health, note=note)
        manifest = await self.records.manifest_of(record)
        pool = await self.records.candidates(record_dht_key(record_id), health.n)
        contacts = {**survey.contacts, **{c.public_key: c for c, _ in pool}}
        sites = {c.public_key: site for c, site in pool}
        for node in health.holders:
            if node not in sites:
                sites[node] = await self.records.site_of(survey.contacts[node]) or node.hex()
        plan = plan_repair(health, [Candidate(c.public_key, site) for c, site in pool], sites)
        if not plan.targets:
            return RepairReport(health, note=plan.note)
        targets = plan.targets
        senders = await self._rebuild(manifest, health, contacts, targets)
        placed = {i: s.holder.public_key for s in senders if s.confirmed for i in s.indices}
        failed = {s.holder.public_key: s.failure for s in senders if s.failure is not None}
        event(
            log,
            logging.INFO,
            "record repaired" if placed else "repair failed",
            record=short(record_id),
            placed=len(placed),
            failed=len(failed),
        )
        return RepairReport(health, placed, failed)

    async def _rebuild(
        self,
        manifest: Manifest,
        health: RecordHealth,
        contacts: dict[bytes, Contact],
        targets: dict[int, bytes],
    ) -> list[HolderSender]:
        """Stream the rebuilt blocks of `targets` (index -> node) to their new holders."""
        config = self.records.config
        senders = holder_senders(
            port=self.records.port,
            record_id=manifest.record_id,
            assignment={index: contacts[node] for index, node in targets.items()},
            batch_bytes=config.transfer_batch_bytes,
            timeout=config.call_timeout,
        )
        fetcher = BlockFetcher(
            port=self.records.port,
            manifest=manifest,
            holders={
                index: [contacts[node] for node in health.holders_of(index)]
                for index in health.held
            },
            latency=self.records.latency,
            timeout=config.call_timeout,
        )
        code = ReedSolomon(manifest.k, manifest.n)
        wanted = sorted(targets)

        def rebuild(item: tuple[int, dict[int, bytes]]) -> dict[int, bytes]:
            segment, blocks = item
            return _rebuild_segment(code, manifest, segment, blocks, wanted)

        try:
            await send_to_holders(
                senders, lambda: manifest, fetcher.segment_blocks(), rebuild, lambda r: r
            )
        except (TooFewShards, RecordError) as exc:  # no holder got `complete`: nothing claimed
            raise RecordError(f"cannot repair record {short(manifest.record_id)}: {exc}") from None
        return senders


def _rebuild_segment(
    code: ReedSolomon,
    manifest: Manifest,
    segment: int,
    blocks: dict[int, bytes],
    wanted: Sequence[int],
) -> dict[int, bytes]:
    """In a worker thread: the wanted blocks of one segment, checked against the manifest."""
    rebuilt = code.reconstruct(blocks, wanted)
    for index, block in rebuilt.items():
        if not manifest.verify_block(segment, index, block):
            raise RecordError(
                f"rebuilt block {segment}/{index} of record {short(manifest.record_id)} does"
                " not match its manifest (the record's shards are inconsistent)"
            )
    return rebuilt
