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
from dataclasses import dataclass, field

from node.logs import event, get_logger
from node.records.errors import short
from node.records.rebuild import rebuild_onto
from node.records.service import RecordService
from protocol.control.replies import RepairOutcome
from protocol.dht.contact import Contact
from protocol.ids import record_dht_key
from protocol.records.health import RecordHealth
from protocol.records.repair import plan_repair, triage

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
        reach = self.records.reach
        pool = await reach.candidates(record_dht_key(record_id), health.n)
        contacts = {**survey.contacts, **{r.contact.public_key: r.contact for r in pool}}
        sites = {r.contact.public_key: r.site for r in pool}
        for node in health.holders:
            if node not in sites:
                sites[node] = await reach.site_of(survey.contacts[node]) or node.hex()
        plan = plan_repair(health, [r.candidate() for r in pool], sites)
        if not plan.targets:
            return RepairReport(health, note=plan.note)
        targets = plan.targets
        records = self.records
        senders = await rebuild_onto(
            port=records.port,
            config=records.config,
            latency=records.latency,
            manifest=manifest,
            sources={
                index: [contacts[node] for node in health.holders_of(index)]
                for index in health.held
            },
            targets={index: contacts[node] for index, node in targets.items()},
        )
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
