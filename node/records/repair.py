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
    copied: dict[int, bytes] = field(default_factory=dict)  # index -> copy on another site
    failed: dict[bytes, str] = field(default_factory=dict)  # target -> why
    note: str = ""

    def outcome(self) -> RepairOutcome:
        return RepairOutcome(
            placed={str(i): node for i, node in self.placed.items()},
            copied={str(i): node for i, node in self.copied.items()},
            failed={node.hex(): why for node, why in self.failed.items()},
            note=self.note,
        )


class Repairer:
    def __init__(self, records: RecordService) -> None:
        self.records = records

    async def survey(self, record_id: bytes, verify: bool) -> Survey:
        """Who holds what of the record, at which site, in a network of how many sites."""
        record = self.records.lookup(record_id)
        holdings = await self.records.holdings_of(record_id, verify)
        reach = self.records.reach
        sites: dict[bytes, str] = {}
        for h in holdings:
            site = await reach.site_of(h.contact)
            if site:
                sites[h.contact.public_key] = site
        health = RecordHealth.of(
            record_id,
            record.k,
            record.n,
            [(h.contact.public_key, h.found) for h in holdings],
            sites=sites,
            network_sites=reach.known_sites(),
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
        sites = {**health.sites, **{r.contact.public_key: r.site for r in pool if r.site}}
        need = shard_size(manifest)
        plan = plan_repair(health, [r.candidate() for r in pool], sites, need)
        targets = plan.assignments()
        if not targets:
            return RepairReport(health, note=plan.note)
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
            targets=[(index, contacts[node]) for index, node in targets],
            random_bytes=records.random_bytes,
        )
        confirmed = {s.holder.public_key for s in senders if s.confirmed}
        placed = {i: node for i, node in plan.targets.items() if node in confirmed}
        copied = {i: node for i, node in plan.copies if node in confirmed}
        failed = {s.holder.public_key: s.failure for s in senders if s.failure is not None}
        event(
            log,
            logging.INFO if (placed or copied) and not failed else logging.WARNING,
            "record repaired" if placed or copied else "repair failed",
            record=short(record_id),
            placed=len(placed),
            copied=len(copied),
            failed=len(failed),
            reasons="; ".join(f"{short(node)}: {why}" for node, why in failed.items()),
        )
        for sender in senders:  # a target that refused (full) may have changed: ask again
            if sender.failure is not None:
                reach.forget(sender.holder.public_key)
        return RepairReport(health, placed, copied, failed)


def shard_size(manifest: Manifest) -> int:
    """Bytes one shard index of the record takes on a holder."""
    return sum(manifest.block_size(segment) for segment in range(manifest.segment_count))
