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
from dataclasses import dataclass, field, replace

from node.logs import event, get_logger
from node.records.audit import audit_holders
from node.records.errors import short
from node.records.rebuild import rebuild_onto
from node.records.service import RecordService
from node.records.views import RecordViews
from protocol.control.replies import RepairOutcome
from protocol.dht.contact import Contact
from protocol.ids import record_dht_key
from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound
from protocol.records.repair import plan_repair, triage
from storage.codec.manifest import Manifest

log = get_logger("repair")


@dataclass(frozen=True)
class Survey:
    health: RecordHealth
    contacts: dict[bytes, Contact]
    claims: list[tuple[Contact, HoldingsFound]]  # what each holder answered
    audited_bytes: int = 0  # block bytes fetched to audit the holders (0: not audited)
    # Claims whose holder answered an audit with no block or a wrong one (refusals for
    # want of rights are not among them).
    failed_audit: dict[bytes, tuple[int, ...]] = field(default_factory=dict)


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
    def __init__(self, records: RecordService, views: RecordViews | None = None) -> None:
        self.records = records
        self.views = views  # told every survey's outcome (the read gate weighs repair reads)

    async def survey(self, record_id: bytes, verify: bool, audit: bool = False) -> Survey:
        """Who holds what of the record, at which site, in a network of how many sites.

        With `audit`, every claimed index is checked (see `audit`).
        """
        holdings = await self.records.holdings_of(record_id, verify)
        claims = [(h.contact, h.found) for h in holdings]
        survey = await self._judge(record_id, claims, {}, 0)
        return await self.audit(survey) if audit else survey

    async def audit(self, survey: Survey) -> Survey:
        """The survey with every claimed index checked with one random block
        (node/records/audit.py): one that fails does not count, and its holder
        is avoided by placement for a while.

        Only a node that reads the record by permit (its owner's or a grantee's
        node) audits: honest holders always serve it, so a refusal is no excuse and
        the claim does not count. Any other node cannot audit (holders serve a
        holder proof only for repair), and the claims count as the holders state
        them, marked unaudited (docs/records.md).
        """
        if not survey.claims:
            return survey
        records = self.records
        record_id = survey.health.record_id
        if not records.permitted(record_id):
            unaudited = {
                contact.public_key: tuple(found.complete) for contact, found in survey.claims
            }
            return await self._judge(record_id, survey.claims, {}, 0, unaudited)
        manifest = await records.manifest_of(records.lookup(record_id))
        result = await audit_holders(
            port=records.port,
            manifest=manifest,
            claims=survey.claims,
            random_bytes=records.random_bytes,
            timeout=records.config.call_timeout,
            permit=records.own_permits(record_id),  # an audit is a read: the same rights
        )
        for node in result.failed:
            records.reach.distrust(node)
        unproven = {**result.refused, **result.failed}
        judged = await self._judge(record_id, survey.claims, unproven, result.audited_bytes)
        return replace(judged, failed_audit=result.failed)

    async def _judge(
        self,
        record_id: bytes,
        claims: list[tuple[Contact, HoldingsFound]],
        unproven: dict[bytes, tuple[int, ...]],
        audited: int,
        unaudited: dict[bytes, tuple[int, ...]] | None = None,
    ) -> Survey:
        record = self.records.lookup(record_id)
        reach = self.records.reach
        sites: dict[bytes, str] = {}
        for contact, _ in claims:
            site = await reach.site_of(contact)
            if site:
                sites[contact.public_key] = site
        health = RecordHealth.of(
            record_id,
            record.k,
            record.n,
            [(contact.public_key, found) for contact, found in claims],
            sites=sites,
            network_sites=reach.known_sites(),
            unproven=unproven,
            unaudited=unaudited,
        )
        contacts = {contact.public_key: contact for contact, _ in claims}
        if self.views is not None:
            self.views.note(health)
        return Survey(health, contacts, claims, audited)

    async def check(self, record_id: bytes, verify: bool = True) -> RecordHealth:
        """The record's health; no index counts on its holder's word alone (audited)."""
        return (await self.survey(record_id, verify, audit=True)).health

    async def repair(self, record_id: bytes, survey: Survey | None = None) -> RepairReport:
        """Bring the record back to n distinct holders, as far as the network allows."""
        record = self.records.lookup(record_id)
        survey = survey or await self.survey(record_id, verify=False, audit=True)
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
            permit=records.own_permits(record_id),  # served if this node owns or was granted it
            proof=records.holder_proofs(manifest),  # served if it holds an index of it
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
        rebuilt = len(placed) + len(copied)
        records.metrics.repair.repaired(rebuilt, rebuilt * need, len(failed))
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
            if sender.proof_failed:
                reach.distrust(sender.holder.public_key)
        return RepairReport(health, placed, copied, failed)


def shard_size(manifest: Manifest) -> int:
    """Bytes one shard index of the record takes on a holder."""
    return sum(manifest.block_size(segment) for segment in range(manifest.segment_count))
