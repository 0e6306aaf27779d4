"""Break-glass with real daemons: hospital B (site-1) asks with the patient's view key,
A's policy (allowed site, short maximum) grants it, B reads, A's review and her history
flag it, and once the grant expires B's reads are refused."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network, medvault
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.slow

MAX_SECONDS = 20  # A's max_duration: B asks for 12h and gets this
REASON = "unconscious after a car crash, ED site-1"


def test_an_emergency_request_is_granted_flagged_and_expires(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    settings: dict[str, dict[str, Any]] = {
        "storage": {"k": 2, "n": 4, "happy": 3},
        "gossip": {"interval": 0.5},
        "emergency": {"allowed_sites": ["site-1"], "max_duration": float(MAX_SECONDS)},
    }
    net = Network(tmp_path / "net", 4, settings)
    daemons.extend(net.nodes)
    net.start_all()
    her_key, her_view = tmp_path / "alice.key", tmp_path / "alice.view"
    medvault("keys", "new", "-o", str(her_key))
    medvault("keys", "export-view", str(her_key), "--out", str(her_view))
    address = medvault("keys", "address", str(her_key)).stdout.strip()
    source = tmp_path / "chart.bin"
    data = os.urandom(30_000)
    source.write_bytes(data)
    record = net.cli(0, "put", str(source), "--patient", address)["record_id"]

    def b_finds_her_record() -> bool:
        listed = net.cli(1, "wallet", "ls", "--as", str(her_view))["records"]
        return any(r["record_id"] == record for r in listed)

    wait_until("B's ledger holds her record", b_finds_her_record)
    asked = net.cli(1, "emergency", "request", "--view-key", str(her_view), "--reason", REASON,
                    "--duration", "12h")["records"]  # fmt: skip
    assert [(r["record_id"], r["status"]) for r in asked] == [(record, "granted")]
    assert asked[0]["expires_at"] - time.time() * 1000 <= (MAX_SECONDS + 1) * 1000  # capped
    # C (site-2) is not in A's policy: refused, nothing granted.
    refused = net.cli(2, "emergency", "request", "--view-key", str(her_view), "--reason", REASON)
    assert refused["records"][0]["status"] == "refused"
    assert refused["records"][0]["code"] == "not_allowed"

    out = tmp_path / "read.bin"
    done = net.run(1, "get", record, "-o", str(out))  # no --purpose: B's node chooses
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == data

    def owner_audit() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = net.cli(0, "audit", record)["rows"]
        return rows

    def emergency_read_shown() -> bool:
        return any(r["kind"] == "emergency" for r in owner_audit())

    wait_until("A's audit shows B's read", emergency_read_shown)
    rows = owner_audit()
    [read] = [r for r in rows if r["kind"] == "emergency"]
    assert read["purpose"] == "ETREAT" and "EMERGENCY" in read["flags"]
    assert read["site"] == "site-1"
    [glass] = [r for r in rows if r["kind"] == "break-glass"]
    assert glass["who"] == read["node"] and glass["site"] == "site-1"
    assert glass["reason"] == REASON and glass["expires_at"] == asked[0]["expires_at"]
    assert glass["flags"] == ["EMERGENCY", "open: not signed off"]
    text = net.run(0, "audit", record).stdout
    assert "for emergency treatment" in text and "open: not signed off" in text

    [flagged] = net.cli(0, "emergency", "review")["accesses"]
    assert flagged["record_id"] == record and flagged["reason"] == REASON
    assert flagged["site"] == "site-1" and not flagged["signed_off"]
    history = net.cli(0, "wallet", "history", record, "--as", str(her_key))["events"]
    [shown] = [e for e in history if e.get("emergency")]
    assert shown["emergency"] == "flagged" and shown["reason"] == REASON
    # Her view key sees the flag, not the reason.
    viewed = net.cli(0, "wallet", "history", record, "--as", str(her_view))["events"]
    assert [e["reason"] for e in viewed if e.get("emergency")] == [None]
    # The ledger shows no reason in plain text.
    ledger = net.run(0, "ledger", "--json")
    assert REASON not in ledger.stdout

    def b_is_refused() -> bool:
        return net.run(1, "get", record, "-o", str(tmp_path / "late.bin")).returncode != 0

    wait_until("B's grant has expired", b_is_refused, timeout=MAX_SECONDS + 60)

    net.cli(0, "emergency", "signoff", flagged["id"][:16], "--note", "reviewed")
    assert net.cli(0, "emergency", "review")["accesses"] == []
    [signed] = net.cli(0, "emergency", "review", "--all")["accesses"]
    assert signed["signed_off"] and signed["note"] == "reviewed"
    rows = owner_audit()
    [glass] = [r for r in rows if r["kind"] == "break-glass"]
    assert glass["flags"] == ["EMERGENCY"] and glass["note"] == "reviewed"
    assert glass["signed_off_by"] == rows[0]["by"]  # the owner (who wrote the record)
    [signoff] = [r for r in rows if r["kind"] == "signoff"]
    assert signoff["emergency"] == glass["entry"] and signoff["note"] == "reviewed"
