"""`medvault audit RECORD` against whole nodes: the owner's node sees every grant, read
(with its purpose and the node it went through), claim and revoke; a fake read by a key
never granted stands out; a node without a part in the record is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

from node.cli.audit import line
from protocol.ledger.entries import AccessBody
from protocol.ledger.state import LedgerState
from protocol.records import permit
from tests.node.cluster import knows_grant
from tests.node.test_cli_wallet import address_of, wallet_knows
from tests.node.test_cli_wallet_acts import put_for
from tests.node.test_control_cli import Controlled, controlled, new_person


async def audit_once(
    net: Controlled, index: int, record_id: str, ready: Callable[[LedgerState], bool]
) -> list[Any]:
    """Node `index`'s audit rows once its ledger state is `ready` (checked in this task
    between awaits: waiting on the ledger while a CLI call runs could miss the change)."""
    node = net.cluster.nodes[index]
    while not ready(node.ledger.state()):
        await node.ledger.changed()
    rows: list[Any] = (await net.ok(index, "audit", record_id))["rows"]
    return rows


async def test_the_owner_audits_grants_reads_claims_revokes_and_spots_fake_reads(
    tmp_path: Path,
) -> None:
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        clinician, clinician_key = new_person(tmp_path, "clinician")
        record_id, data = await put_for(net, tmp_path, alice, "scan.pdf")
        await net.ok(0, "grant", record_id, clinician_key)
        rid = bytes.fromhex(record_id)
        await knows_grant(net.cluster.nodes[1], rid, bytes.fromhex(clinician_key))
        out = tmp_path / "out.pdf"
        await net.ok(1, "get", record_id, "--as", str(clinician), "--purpose", "payment",
                     "-o", str(out))  # fmt: skip
        assert out.read_bytes() == data
        await wallet_knows(net, 2, alice, record_id)
        claimed = await net.ok(2, "wallet", "attest", record_id, "--as", str(alice))
        await net.ok(0, "revoke", record_id, clinician_key)
        # A member logs a read by a key of its own that was never granted the record.
        member = net.cluster.nodes[3]
        fake = nacl.signing.SigningKey.generate()
        while rid not in member.ledger.state().records:
            await member.ledger.changed()
        statement = permit.sign(fake, rid, member.public_key, member.clock_ms(),
                                read_id=bytes(16))  # fmt: skip
        await member.ledger.append(AccessBody(rid, statement))

        readers = {bytes.fromhex(clinician_key), bytes(fake.verify_key)}

        def ready(state: LedgerState) -> bool:
            seen = {read.reader for read in state.reads_of(rid)}
            return readers <= seen and len(state.attestations.get(rid, ())) == 1

        rows = await audit_once(net, 0, record_id, ready)

        by_kind: dict[str, list[Any]] = {}
        for row in rows:
            by_kind.setdefault(row["kind"], []).append(row)
        assert [r["at_ms"] for r in rows] == sorted(r["at_ms"] for r in rows)
        patient = next(r for r in by_kind["grant"] if r["patient"])
        assert patient["one_time"] and patient["who_shown"].startswith("one-time key P ")
        assert address_of(alice) not in str(rows)  # only her view key links P to her
        doctor = next(r for r in by_kind["grant"] if r["who"] == clinician_key)
        assert doctor["who_shown"] == f"key {clinician_key[:16]}"
        (paid,) = [r for r in by_kind["read"] if r["who"] == clinician_key]
        assert paid["purpose"] == "HPAYMT" and paid["purpose_name"] == "payment"
        assert paid["node"] == net.cluster.nodes[1].public_key.hex() and not paid["flags"]
        (claim,) = by_kind["claim"]
        assert claim["who"] == claimed["grant_key"] and claim["one_time"]
        (revoke,) = by_kind["revoke"]
        assert revoke["who"] == clinician_key
        (faked,) = [r for r in by_kind["read"] if r["who"] == bytes(fake.verify_key).hex()]
        assert faked["flags"] == ["reader never granted"]
        assert faked["node"] == member.public_key.hex()

        text = await net.run(0, "audit", record_id[:12])
        assert text.exit_code == 0, text.output
        assert "reader never granted" in text.output and "for payment" in text.output
        assert "patient/co-owner" in text.output and "one-time key P" in text.output


async def test_only_the_owner_or_a_grantee_node_may_audit(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        record_id, _ = await put_for(net, tmp_path, alice, "scan.pdf")
        node1 = net.cluster.nodes[1]
        while bytes.fromhex(record_id) not in node1.ledger.state().records:
            await node1.ledger.changed()
        refused = await net.run(1, "audit", record_id)
        assert refused.exit_code == 1
        assert "neither owns" in refused.output and "grant" in refused.output
        await net.ok(0, "grant", record_id, node1.public_key.hex())
        rows = await _when_granted(net, record_id)
        assert any(r["kind"] == "grant" and r["who"] == node1.public_key.hex() for r in rows)


async def _when_granted(net: Controlled, record_id: str) -> list[Any]:
    node1 = net.cluster.nodes[1]
    rid = bytes.fromhex(record_id)
    while node1.ledger.state().grant_for(rid, node1.public_key, node1.clock_ms()) is None:
        await node1.ledger.changed()
    rows: list[Any] = (await net.ok(1, "audit", record_id))["rows"]
    return rows


async def test_get_with_an_unknown_purpose_is_a_usage_error(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=6, served=1) as net:
        refused = await net.run(0, "get", "ab" * 32, "--purpose", "curiosity", "-o", "x")
        assert refused.exit_code == 2
        assert "unknown purpose of use 'curiosity'" in refused.output
        assert "treatment" in refused.output and "payment" in refused.output


def test_a_row_of_a_kind_this_cli_does_not_know_is_still_shown() -> None:
    """A newer daemon's kind (an emergency grant) prints with its fields, not dropped."""
    row = {"kind": "emergency-grant", "at_ms": 0, "who_shown": "key ab", "node_shown": None,
           "purpose_name": None, "loggers": [], "by": "cd" * 32,
           "flags": ["EMERGENCY"]}  # fmt: skip
    shown = line(row)
    assert "emergency-grant" in shown and "EMERGENCY" in shown and "by cdcd" in shown


async def test_break_glass_in_the_audit_a_read_unasked_is_an_emergency_and_the_signoff_shows(
    tmp_path: Path,
) -> None:
    """Owner A opens emergency access for node B (straight through A's service: the policy
    is tested in tests/node/test_emergency.py). B's `get` without --purpose reads for
    emergency treatment; B stating treatment is flagged all the same; A's audit shows the
    break-glass row with the reason, open, then signed off with the note."""
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        record_id, data = await put_for(net, tmp_path, alice, "scan.pdf")
        rid = bytes.fromhex(record_id)
        a, b = net.cluster.nodes[0], net.cluster.nodes[1]
        while rid not in a.ledger.state().records:
            await a.ledger.changed()
        await a.emergency.grant(rid, b.public_key, "unconscious, ED of B", 600_000)
        await knows_grant(b, rid, b.public_key)
        out = tmp_path / "out.pdf"
        await net.ok(1, "get", record_id, "-o", str(out))
        await net.ok(1, "get", record_id, "--purpose", "treatment", "-o", str(out))
        assert out.read_bytes() == data

        def both_reads(state: LedgerState) -> bool:
            return len([r for r in state.reads_of(rid) if r.reader == b.public_key]) == 2

        rows = await audit_once(net, 0, record_id, both_reads)
        (glass,) = [r for r in rows if r["kind"] == "break-glass"]
        assert glass["who"] == b.public_key.hex() and glass["reason"] == "unconscious, ED of B"
        assert glass["flags"] == ["EMERGENCY", "open: not signed off"]
        reads = [r for r in rows if r["node"] == b.public_key.hex() and r["purpose"]]
        assert sorted(r["purpose"] for r in reads) == ["ETREAT", "TREAT"]
        assert all(r["kind"] == "emergency" and "EMERGENCY" in r["flags"] for r in reads)
        stated = next(r for r in reads if r["purpose"] == "TREAT")
        assert "stated treatment under an emergency grant" in stated["flags"]
        # B, a grantee holding the record key, reads the reason in its own audit too.
        rows_b: list[Any] = (await net.ok(1, "audit", record_id))["rows"]
        assert [r["reason"] for r in rows_b if r["kind"] == "break-glass"] == [glass["reason"]]
        text = await net.run(0, "audit", record_id)
        assert text.exit_code == 0, text.output
        assert (
            'reason "unconscious, ED of B"' in text.output and "open: not signed off" in text.output
        )

        await net.ok(0, "emergency", "signoff", glass["entry"][:16], "--note", "reviewed")
        rows = await audit_once(net, 0, record_id, lambda state: True)
        (glass,) = [r for r in rows if r["kind"] == "break-glass"]
        assert glass["signed_off_by"] == a.public_key.hex() and glass["note"] == "reviewed"
        assert glass["flags"] == ["EMERGENCY"]
        (signoff,) = [r for r in rows if r["kind"] == "signoff"]
        assert signoff["emergency"] == glass["entry"] and not signoff["flags"]
        text = await net.run(0, "audit", record_id)
        assert f"signed off by {a.public_key.hex()[:16]}" in text.output
        assert 'note "reviewed"' in text.output
