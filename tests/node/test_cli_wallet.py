"""The CLI's stealth verbs against whole nodes: `keys address`, `keys export-view`,
`put --patient ADDRESS`, `grant` to an address, `get --as` through a stealth grant and
`wallet ls` with a full or a view-only key (and another person's wallet, which sees none)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import trio
from click.testing import CliRunner

from node.cli.main import cli
from protocol.ledger.timestamps import is_coarse
from storage.codec.padme import padme
from tests.node.test_control_cli import Controlled, controlled, new_person


def address_of(key_file: Path) -> str:
    result = CliRunner().invoke(cli, ["keys", "address", str(key_file)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def synced(net: Controlled, index: int) -> None:
    """Return once node `index` holds every ledger entry any node holds (checked here,
    between awaits, so no change slips by while a CLI call runs in its thread)."""
    node = net.cluster.nodes[index]
    while True:
        everywhere = {e.hash for n in net.cluster.nodes for e in n.ledger.book.entries()}
        if everywhere <= {e.hash for e in node.ledger.book.entries()}:
            return
        await node.ledger.changed()


async def wallet_knows(
    net: Controlled, index: int, key_file: Path, record_id: str
) -> list[dict[str, object]]:
    """Node `index`'s wallet listing for the key, once the node has caught up (waiting on
    the ledger while a CLI call ran in its thread could miss the change: it hung)."""
    await synced(net, index)
    listed = (await net.ok(index, "wallet", "ls", "--as", str(key_file)))["records"]
    assert any(r["record_id"] == record_id for r in listed), listed
    return list(listed)


def test_keys_address_and_export_view(tmp_path: Path) -> None:
    key_file, public = new_person(tmp_path, "alice")
    address = address_of(key_file)
    assert len(address) == 132 and address.endswith(public)  # version, kind, V, then S
    view_file = tmp_path / "alice.view"
    result = CliRunner().invoke(
        cli, ["keys", "export-view", str(key_file), "--out", str(view_file)]
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(view_file.stat().st_mode) == 0o600
    lines = view_file.read_text().splitlines()
    assert lines[0] == "medvault view-key v1" and len(bytes.fromhex(lines[1])) == 66
    again = CliRunner().invoke(cli, ["keys", "export-view", str(key_file), "--out", str(view_file)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


async def test_a_patient_put_by_address_reads_and_lists_her_own_record(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        data = os.urandom(90_000)
        source = tmp_path / "scan.pdf"
        source.write_bytes(data)
        alice_key, alice_public = new_person(tmp_path, "alice")
        doctor_key, _ = new_person(tmp_path, "doctor")
        other_key, _ = new_person(tmp_path, "other")
        put = await net.ok(0, "put", str(source), "--patient", address_of(alice_key))
        record_id = str(put["record_id"])
        granted = await net.ok(0, "grant", record_id, address_of(doctor_key), "--expires", "30d")
        assert granted["type"] == "sgrant" and granted["body"]["index"] == 1
        # Times the ledger publishes are minutes: the grant's, and a duration's end.
        assert is_coarse(granted["timestamp"]) and is_coarse(granted["body"]["expires_at"])

        listed = await wallet_knows(net, 1, alice_key, record_id)
        assert [(r["index"], r["patient"], r["current"], r["opens"]) for r in listed] == [
            (0, True, True, True)
        ]
        # Her key opens the sealed part: the true size, name and type (the ledger's is padded).
        assert padme(len(data)) != len(data)
        assert (listed[0]["size"], listed[0]["filename"]) == (len(data), "scan.pdf")
        # Her long-term key appears in no entry any node holds.
        for node in net.cluster.nodes:
            assert all(bytes.fromhex(alice_public) not in e.raw for e in node.ledger.book.entries())

        view_file = tmp_path / "alice.view"
        CliRunner().invoke(cli, ["keys", "export-view", str(alice_key), "--out", str(view_file)])
        by_view = (await net.ok(1, "wallet", "ls", "--as", str(view_file)))["records"]
        assert [(r["record_id"], r["opens"]) for r in by_view] == [(record_id, False)]
        assert (by_view[0]["size"], by_view[0]["filename"]) == (padme(len(data)), None)
        assert (await net.ok(1, "wallet", "ls", "--as", str(other_key)))["records"] == []

        for who, name in ((alice_key, "alice.pdf"), (doctor_key, "doctor.pdf")):
            out = tmp_path / name
            await wallet_knows(net, 2, who, record_id)
            await net.ok(2, "get", record_id, "-o", str(out), "--as", str(who))
            assert out.read_bytes() == data
        refused = await net.run(
            2, "get", record_id, "-o", str(tmp_path / "x"), "--as", str(other_key)
        )
        assert refused.exit_code == 1 and "no grant" in refused.output

        # She attests through her grant: signed by its P, on the minute; a stranger cannot.
        attested = await net.ok(2, "attest", record_id, "--as", str(alice_key))
        entry = next(
            e
            for e in net.cluster.nodes[2].ledger.book.entries()
            if e.hash.hex() == attested["entry"]
        )
        state = net.cluster.nodes[2].ledger.state()
        rid = bytes.fromhex(record_id)
        (p,) = [g.grantee for g in state.grants_of(rid) if g.patient]
        assert entry.author == p and is_coarse(entry.timestamp)
        assert p in state.attestations.get(rid, ())
        stranger = await net.run(2, "attest", record_id, "--as", str(other_key))
        assert stranger.exit_code == 1 and "never granted" in stranger.output

        # An ended grant opens nothing more through the daemon: the padded size, no name.
        (doctor_p,) = [g.grantee for g in state.grants_of(rid) if g.stealth and not g.patient]
        (doctors,) = (await net.ok(0, "wallet", "ls", "--as", str(doctor_key)))["records"]
        assert doctors["grant_key"] == doctor_p.hex()  # her wallet names what to revoke
        await net.ok(0, "revoke", record_id, doctor_p.hex())
        (ended,) = (await net.ok(0, "wallet", "ls", "--as", str(doctor_key)))["records"]
        assert not ended["current"] and ended["opens"]
        assert (ended["size"], ended["filename"]) == (padme(len(data)), None)

        bad = await net.run(0, "grant", record_id, "ab" * 40)
        assert bad.exit_code == 2 and "address (132)" in bad.output
        patient_key_only = await net.run(0, "grant", record_id, alice_public, "--patient")
        assert (
            patient_key_only.exit_code == 2
            and "--patient takes an address" in patient_key_only.output
        )
        await trio.lowlevel.checkpoint()
