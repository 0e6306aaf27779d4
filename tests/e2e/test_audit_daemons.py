"""Issue 16's audit test, on real daemons: a read at hospital B appears in the owner's
`medvault audit` and in the patient's `wallet history` within seconds, with its purpose;
a holder refuses a read without a valid access statement.

Five daemons on 127.0.0.1 (sites site-0..site-4) and one certified member run in this
process. Hospital A (node 0) puts a record for a patient (her stealth address) and
grants a clinician's key and the member's node key. The clinician reads at hospital B
(node 1) with `get --as clinician.key --purpose treatment`. A's audit then shows that
read (reader, node, B's certified site, purpose) and the patient's wallet history shows
it too. The member, granted and well signed, asks every holder for blocks with a
version 1 permit and with none: refused (old_permit, forbidden); with a version 2
statement it is served, so the refusals are about the statement, not the grant.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from node.assembly import Node
from node.config.datadir import DataDir
from node.net.errors import PeerClosed, RemoteError
from node.sim.localnet import Daemon, Network, medvault
from protocol.net.messages import ErrorCode, Message
from protocol.records import permit
from protocol.records.messages import BlockRef, BlocksFound, FetchBlocks
from tests.e2e.member import Member

pytestmark = pytest.mark.slow

MEMBER = 5
WITHIN_S = 30.0  # "within seconds": gossip runs every 0.5 s here


def settings() -> dict[str, dict[str, Any]]:
    return {
        "storage": {"k": 3, "n": 5, "happy": 4, "repair_interval": 600},
        "gossip": {"interval": 0.5},
    }


def poll(what: str, found: Callable[[], Any], timeout: float) -> Any:
    """The first truthy `found()`, polled until a bounded deadline (daemons are processes:
    there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.2)
    return value


def test_a_read_at_hospital_b_reaches_the_owners_audit_and_the_patients_history(
    tmp_path: Path, daemons: list[Daemon], members: list[Member]
) -> None:
    net = Network(tmp_path / "net", MEMBER + 1, settings())
    daemons.extend(net.nodes[:MEMBER])
    for index in range(MEMBER):
        net.start(index)
    for node in net.nodes[:MEMBER]:
        node.wait_for("joined")
    patient_key, clinician_key = tmp_path / "patient.key", tmp_path / "clinician.key"
    medvault("keys", "new", "-o", str(patient_key))
    clinician = medvault("keys", "new", "-o", str(clinician_key)).stdout.strip()
    patient = medvault("keys", "address", str(patient_key)).stdout.strip()
    source = tmp_path / "record.bin"
    data = os.urandom(300_000)
    source.write_bytes(data)

    put = net.cli(0, "put", str(source), "--patient", patient,
                  "--grant", clinician, "--grant", net.keys[MEMBER])  # fmt: skip
    rid = str(put["record_id"])

    def b_lists_it() -> bool:
        listed = net.cli(1, "ls", "--as", str(clinician_key))["records"]
        return any(r["record_id"] == rid for r in listed)

    poll("hospital B knows the clinician's grant", b_lists_it, 60)
    copy = tmp_path / "copy.bin"
    net.cli(1, "get", rid, "--as", str(clinician_key), "--purpose", "treatment", "-o", str(copy))
    read_at = time.monotonic()
    assert copy.read_bytes() == data

    def in_audit() -> dict[str, Any] | None:
        rows = net.cli(0, "audit", rid)["rows"]
        return next((r for r in rows if r["kind"] == "read" and r["who"] == clinician), None)

    row = poll("the read is in A's audit", in_audit, WITHIN_S)
    audit_s = time.monotonic() - read_at
    assert (row["purpose"], row["purpose_name"]) == ("TREAT", "treatment")
    assert row["node"] == net.keys[1] and row["site"] == "site-1"  # B, by its certificate
    assert not row["flags"] and net.keys[1] in row["loggers"]

    def in_history() -> dict[str, Any] | None:
        history = net.cli(2, "wallet", "history", rid, "--as", str(patient_key))["events"]
        return next((e for e in history if e["read"] and e["grant_key"] == clinician), None)

    event = poll("the read is in her wallet history", in_history, WITHIN_S)
    history_s = time.monotonic() - read_at
    assert event["read"]["purpose"] == "TREAT" and event["read"]["node"] == net.keys[1]
    assert not event["mine"]  # the clinician's read, not hers
    assert audit_s < WITHIN_S and history_s < WITHIN_S

    member = Member(DataDir(net.nodes[MEMBER].data_dir), lambda node: _ask(node, rid))
    members.append(member)
    answers = member.start()
    assert answers["old"] and set(answers["old"]) == {ErrorCode.OLD_PERMIT}
    assert set(answers["none"]) == {ErrorCode.FORBIDDEN}
    assert answers["served"] == len(answers["old"])  # a valid statement is served


async def _ask(node: Node, rid: str) -> dict[str, Any]:
    """Ask every holder for one block: with a version 1 permit, with none, with a valid
    statement; the refusal codes (or blocks served) per kind of request."""
    record_id = bytes.fromhex(rid)
    me = node.public_key
    while node.ledger.state().grant_for(record_id, me, node.clock_ms()) is None:
        await node.ledger.changed()
    holdings = await node.records.holdings_of(record_id)
    key = node.parts.identity
    answers: dict[str, Any] = {"old": [], "none": [], "served": 0}
    for holding in holdings:
        index = holding.found.complete[0]
        base = FetchBlocks(record_id, (BlockRef(0, index),))
        old_fields = [1, record_id, me, me, node.clock_ms()]  # version 1: no purpose, no read
        signature = key.sign(b"medvault/read-permit/v1" + msgpack.packb(old_fields)).signature
        old = msgpack.packb([*old_fields, signature])
        answers["old"].append(
            await _code(node, holding.contact, dataclasses.replace(base, permit=old))
        )
        answers["none"].append(await _code(node, holding.contact, base))
        good = permit.sign(key, record_id, me, node.clock_ms(), read_id=os.urandom(16))
        served = await _code(node, holding.contact, dataclasses.replace(base, permit=good))
        answers["served"] += served == "served"
    return answers


async def _code(node: Node, contact: Any, message: Message) -> str:
    """The holder's refusal code, or "served" when it sent the block."""
    for attempt in range(3):
        try:
            answer = await node.port.call(contact, message, 10.0)
        except RemoteError as exc:
            return str(exc.code)
        except PeerClosed:  # a duplicate connection closed by the tie-break: ask again
            if attempt == 2:
                raise
            continue
        assert isinstance(answer, BlocksFound)
        return "served" if all(answer.blocks) else "nothing"
    raise AssertionError("unreachable")
