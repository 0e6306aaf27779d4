"""Claim events through whole nodes: a patient attests with a disclosure, the insurer she
shared with receives one verified event; a clinician's claim, a stranger and an altered
event get nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nacl.signing
from click.testing import CliRunner
from fhir.resources.R4B.claim import Claim

from node.cli.main import cli
from tests.node.test_cli_wallet import address_of, synced, wallet_knows
from tests.node.test_cli_wallet_acts import put_for
from tests.node.test_control_cli import Controlled, controlled, new_person
from tests.protocol.keys import seed


async def events_of(net: Controlled, index: int, key: Path, *more: str) -> list[dict[str, Any]]:
    await synced(net, index)
    result = await net.run(index, "events", "--as", str(key), *more, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def canonical(event: dict[str, Any]) -> bytes:
    """The event's text as `events verify` takes it (the printed form adds its hash)."""
    shown = {k: v for k, v in event.items() if k != "hash"}
    return json.dumps(shown, sort_keys=True, separators=(",", ":")).encode()


def verify(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["events", "verify", str(path)])
    return result.exit_code, result.output


async def test_the_insurer_she_shared_with_receives_and_verifies_one_claim(
    tmp_path: Path,
) -> None:
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        insurer, _ = new_person(tmp_path, "insurer")
        clinician, _ = new_person(tmp_path, "clinician")
        stranger, _ = new_person(tmp_path, "stranger")
        record_id, _ = await put_for(net, tmp_path, alice, "scan.pdf")
        await net.ok(0, "grant", record_id, address_of(clinician))  # the hospital's doctor
        await wallet_knows(net, 1, alice, record_id)
        await net.ok(1, "wallet", "share", record_id, address_of(insurer), "--as", str(alice))
        assert await events_of(net, 2, insurer) == []  # nothing attested yet

        attested = await net.ok(1, "wallet", "attest", record_id, "--as", str(alice))
        assert attested["disclosed"] == ["date", "type"]
        # The clinician (a grantee, no patient) claims too: the ledger takes it as an
        # attestation, but it is no claim of hers and makes no event.
        await wallet_knows(net, 1, clinician, record_id)
        await net.ok(1, "wallet", "attest", record_id, "--as", str(clinician))

        (event,) = await events_of(net, 2, insurer)
        assert event["record_id"] == record_id
        assert event["patient_key"] == attested["grant_key"]
        assert event["provider"]["node_key"] == net.cluster.nodes[0].public_key.hex()
        disclosed = event["disclosed"]
        assert isinstance(disclosed, dict)
        assert disclosed["type"]["code"] == "application/octet-stream"
        assert disclosed["provider_display"] == ""  # not disclosed by default
        assert len(disclosed["service_date"]) == 10

        # Offline: the event as printed verifies; one altered byte does not.
        text = json.dumps({k: v for k, v in event.items() if k != "hash"},
                          sort_keys=True, separators=(",", ":")).encode()  # fmt: skip
        good = tmp_path / "event.json"
        good.write_bytes(text + b"\n")
        code, output = verify(good)
        assert code == 0 and f"valid, event {event['hash']}" in output
        position = text.index(b'"service_date":"') + len(b'"service_date":"') + 3
        bad = tmp_path / "altered.json"
        bad.write_bytes(text[:position] + b"9" + text[position + 1 :])
        code, output = verify(bad)
        assert code == 1 and "not the ones the claim signed" in output

        # FHIR: a Claim naming her by the one-time key only.
        (claim,) = await events_of(net, 2, insurer, "--fhir")
        Claim.model_validate(claim)
        assert claim["patient"]["identifier"]["value"] == attested["grant_key"]
        assert address_of(alice) not in json.dumps(claim)

        # A key without a grant sees nothing; the clinician holds a grant (he reads the
        # record itself), so he sees her claim, and his own claim is no event.
        assert await events_of(net, 2, stranger) == []
        assert [e["hash"] for e in await events_of(net, 2, clinician)] == [event["hash"]]
        # Asking again returns the same one event (no duplicates, nothing lost).
        assert [e["hash"] for e in await events_of(net, 2, insurer)] == [event["hash"]]


async def test_a_claim_without_a_disclosure_and_a_bad_choice(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        record_id, _ = await put_for(net, tmp_path, alice, "note.txt")
        await wallet_knows(net, 1, alice, record_id)
        bad = await net.run(1, "wallet", "attest", record_id, "--as", str(alice),
                            "--disclose", "date,diagnosis")  # fmt: skip
        assert bad.exit_code == 2 and "not diagnosis" in bad.output
        done = await net.ok(1, "wallet", "attest", record_id, "--as", str(alice),
                            "--disclose", "none")  # fmt: skip
        assert done["disclosed"] == []
        (event,) = await events_of(net, 1, alice)  # she holds a grant: she sees her claim
        assert event["disclosed"]["service_date"] == "" and os.sep not in event["record_id"]


async def test_events_carry_the_owners_certificate_and_verify_with_the_authority(
    tmp_path: Path,
) -> None:
    authority = nacl.signing.SigningKey(seed("claims authority"))
    authority_hex = bytes(authority.verify_key).hex()
    async with controlled(tmp_path, authority=authority) as net:
        alice, _ = new_person(tmp_path, "alice")
        insurer, _ = new_person(tmp_path, "insurer")
        record_id, _ = await put_for(net, tmp_path, alice, "scan.pdf")
        await wallet_knows(net, 1, alice, record_id)
        await net.ok(1, "wallet", "share", record_id, address_of(insurer), "--as", str(alice))
        await net.ok(1, "wallet", "attest", record_id, "--as", str(alice))
        (event,) = await events_of(net, 2, insurer)
        assert event["certificate"] is not None and event["provider"]["site"] == "node-0"
        path = tmp_path / "certified.json"
        path.write_bytes(canonical(event) + b"\n")
        done = CliRunner().invoke(cli, ["events", "verify", str(path), "--authority",
                                        authority_hex])  # fmt: skip
        assert done.exit_code == 0, done.output
        # Another network's authority is refused, naming why.
        other = bytes(nacl.signing.SigningKey(seed("other authority")).verify_key).hex()
        done = CliRunner().invoke(cli, ["events", "verify", str(path), "--authority", other])
        assert done.exit_code == 1 and "not signed by that authority" in done.output


async def test_an_unknown_certificate_leaves_the_event_without_one_and_says_so(
    tmp_path: Path,
) -> None:
    async with controlled(tmp_path) as net:  # an open network: no certificates at all
        alice, _ = new_person(tmp_path, "alice")
        record_id, _ = await put_for(net, tmp_path, alice, "note.txt")
        await wallet_knows(net, 1, alice, record_id)
        await net.ok(1, "wallet", "attest", record_id, "--as", str(alice))
        await synced(net, 1)
        result = await net.run(1, "events", "--as", str(alice), "--json")
        assert result.exit_code == 0, result.output
        (line,) = result.stdout.splitlines()
        event = json.loads(line)
        assert event["certificate"] is None and "no certificate: " in result.stderr
        path = tmp_path / "uncertified.json"
        path.write_bytes(canonical(event) + b"\n")
        assert verify(path)[0] == 0  # valid, only not site-proven
        key = bytes(nacl.signing.SigningKey(seed("claims authority")).verify_key).hex()
        done = CliRunner().invoke(cli, ["events", "verify", str(path), "--authority", key])
        assert done.exit_code == 1 and "carries no certificate" in done.output
