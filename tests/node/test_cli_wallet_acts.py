"""The wallet's acts against whole nodes: `wallet get`, `attest`, `share`, `revoke` and
`history` as the patient, what a reader who is no patient, a stranger and a view-only
key file get (a clear error, nothing written), and the incremental scan of `wallet ls`
(a second run asks only for new rows; a cache that does not fit is scanned again)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from node.cli import wallet_cache
from node.cli.main import cli
from node.cli.wallet import find_mine, open_mine
from node.control.ops import ControlOps
from node.ledger.service import LedgerError
from protocol.control.commands import StealthGrants
from protocol.control.replies import StealthGrantsReply
from protocol.ledger import stealth
from protocol.ledger.entries import RevokeBody, decode_entry, sign_entry
from protocol.privacy import PersonKey, ViewKey
from tests.node.cluster import knows_grant
from tests.node.test_cli_wallet import address_of, wallet_knows
from tests.node.test_control_cli import Controlled, controlled, new_person


def view_file(tmp: Path, key_file: Path) -> Path:
    out = tmp / f"{key_file.stem}.view"
    result = CliRunner().invoke(cli, ["keys", "export-view", str(key_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def person_of(key_file: Path) -> PersonKey:
    return PersonKey(bytes.fromhex(key_file.read_text().splitlines()[1]))


async def grant_ended(net: Controlled, record_id: str, p: str) -> None:
    """Return once every node's state shows the grant P ended."""
    rid, key = bytes.fromhex(record_id), bytes.fromhex(p)
    for node in net.cluster.nodes:
        while node.ledger.state().grant_for(rid, key, node.clock_ms()) is not None:
            await node.ledger.changed()


async def put_for(net: Controlled, tmp: Path, patient: Path, name: str) -> tuple[str, bytes]:
    data = os.urandom(70_000)
    source = tmp / name
    source.write_bytes(data)
    put = await net.ok(0, "put", str(source), "--patient", address_of(patient))
    return str(put["record_id"]), data


async def test_a_patient_reads_attests_shares_and_revokes_from_her_wallet(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        doctor, _ = new_person(tmp_path, "doctor")
        record_id, data = await put_for(net, tmp_path, alice, "scan.pdf")
        await wallet_knows(net, 1, alice, record_id)

        out = tmp_path / "alice.pdf"
        await net.ok(1, "wallet", "get", record_id, "--as", str(alice), "--out", str(out))
        assert out.read_bytes() == data

        # Her attestation: signed by her grant's P, which verifies for anyone.
        attested = await net.ok(1, "wallet", "attest", record_id, "--as", str(alice))
        hers = attested["grant_key"]
        node = net.cluster.nodes[1]
        (entry,) = [e for e in node.ledger.book.entries() if e.hash.hex() == attested["entry"]]
        assert entry.author.hex() == hers and str(entry.type) == "claim"  # an attest that discloses
        assert decode_entry(entry.raw).author == bytes.fromhex(hers)  # the signature verifies
        assert entry.hash not in node.ledger.state().rejected

        # She shares with a doctor, who reads; she revokes, and his reads end.
        shared = await net.ok(
            1, "wallet", "share", record_id, address_of(doctor), "--as", str(alice)
        )
        assert shared["index"] == 1
        await wallet_knows(net, 2, doctor, record_id)
        mine = tmp_path / "doctor.pdf"
        await net.ok(2, "wallet", "get", record_id, "--as", str(doctor), "--out", str(mine))
        assert mine.read_bytes() == data
        history = (await net.ok(1, "wallet", "history", record_id, "--as", str(alice)))["events"]
        reads = [e for e in history if e["type"] == "access"]  # logged in the background
        assert all(e["read"]["purpose"] == "PATRQT" for e in reads)
        history = [e for e in history if e["type"] != "access"]
        assert [(e["type"], e["mine"], e["by_her"]) for e in history] == [
            ("record", False, False),
            ("grant", False, False),  # the owner node's own (old format)
            ("sgrant", True, False),
            ("claim", True, True),
            ("sgrant", False, True),
        ]
        revoked = await net.ok(
            1, "wallet", "revoke", record_id, shared["grant_key"], "--as", str(alice)
        )
        assert revoked["grant_key"] == shared["grant_key"]
        await grant_ended(net, record_id, shared["grant_key"])
        ended = await net.run(2, "wallet", "get", record_id, "--as", str(doctor), "--out", "x")
        assert ended.exit_code == 1 and "has ended (revoked or expired)" in ended.output
        listed = (await net.ok(2, "wallet", "ls", "--as", str(doctor)))["records"]
        assert [(r["record_id"], r["current"]) for r in listed] == [(record_id, False)]

        # The doctor's history: his grant marked, hers not (he holds no view key of hers).
        his = (await net.ok(1, "wallet", "history", record_id, "--as", str(doctor)))["events"]
        his = [e for e in his if e["type"] != "access"]
        assert [(e["type"], e["mine"]) for e in his] == [
            ("record", False),
            ("grant", False),
            ("sgrant", False),
            ("claim", False),
            ("sgrant", True),
            ("revoke", True),
        ]
        # Her view-only key tells which are hers too (it finds, it cannot sign).
        viewed = await net.ok(
            0, "wallet", "history", record_id, "--as", str(view_file(tmp_path, alice))
        )
        assert [e["mine"] for e in viewed["events"]][:4] == [False, False, True, True]
        await trio.lowlevel.checkpoint()


async def test_what_a_reader_a_stranger_and_a_view_only_key_get(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        alice, alice_public = new_person(tmp_path, "alice")
        doctor, _ = new_person(tmp_path, "doctor")
        stranger, _ = new_person(tmp_path, "stranger")
        record_id, _ = await put_for(net, tmp_path, alice, "scan.pdf")
        granted = await net.ok(0, "grant", record_id, address_of(doctor))
        doctor_p = granted["body"]["grant"][68:132]
        await wallet_knows(net, 1, doctor, record_id)
        await wallet_knows(net, 1, alice, record_id)
        node = net.cluster.nodes[1]
        before = len(node.ledger.book)

        async def refused(*args: str) -> str:
            result = await net.run(1, "wallet", *args)
            assert result.exit_code != 0, result.output
            return result.output

        # A reader who is no patient may not share or revoke: a clear error, nothing written.
        not_patient = "no patient (co-owner) grant"
        assert not_patient in await refused(
            "share", record_id, address_of(stranger), "--as", str(doctor)
        )
        hers = (await net.ok(1, "wallet", "ls", "--as", str(alice)))["records"][0]["grant_key"]
        assert not_patient in await refused("revoke", record_id, hers, "--as", str(doctor))
        # A stranger holds nothing to act with.
        for act in ("attest", "get"):
            assert "holds no stealth grant" in await refused(
                act, record_id, "--as", str(stranger), *(["--out", "x"] if act == "get" else [])
            )
        # A view-only key file is refused where signing is needed, by name.
        view = str(view_file(tmp_path, alice))
        for args in (
            ("get", record_id, "--out", "x"),
            ("attest", record_id),
            ("share", record_id, address_of(stranger)),
            ("revoke", record_id, doctor_p),
        ):
            assert "is a view-only key" in await refused(*args, "--as", view)
        # Her own grant, a grant the record does not have, a share to a bare public key.
        assert "this key's own" in await refused("revoke", record_id, hers, "--as", str(alice))
        assert "has no stealth grant" in await refused(
            "revoke", record_id, "ab" * 32, "--as", str(alice)
        )
        bare = await net.run(1, "wallet", "share", record_id, alice_public, "--as", str(alice))
        assert bare.exit_code == 2 and "a share goes to an address" in bare.output
        assert len(node.ledger.book) == before  # nothing was written by any of these

        # The daemon's rules, not the CLI's checks, are the guard: the doctor's P signs a
        # revoke of her grant itself and submits it; it is refused by rule, a thousand times.
        his = person_of(doctor)
        rows = (await ControlOps(node, started=0.0).stealth_grants(StealthGrants(0))).rows
        (found,) = find_mine(his.view, iter(rows))
        opened = open_mine(his, found)
        assert opened is not None
        body = RevokeBody(bytes.fromhex(record_id), bytes.fromhex(hers))
        for moment in range(1, 1001):
            entry = sign_entry(opened.one_time_key, 1, b"", moment, body)
            with pytest.raises(LedgerError, match=stealth.REVOKER_NOT_CO_OWNER):
                await node.records.submit(entry.raw)
        assert len(node.ledger.book) == before
        await knows_grant(node, bytes.fromhex(record_id), bytes.fromhex(hers))


async def test_a_second_ls_asks_only_for_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[StealthGrants] = []
    answered: list[StealthGrantsReply] = []
    real = ControlOps.stealth_grants

    async def counting(self: ControlOps, request: StealthGrants) -> StealthGrantsReply:
        reply = await real(self, request)
        if request.record_id is None:
            asked.append(request)
            answered.append(reply)
        return reply

    monkeypatch.setattr(ControlOps, "stealth_grants", counting)
    async with controlled(tmp_path) as net:
        alice, _ = new_person(tmp_path, "alice")
        bob, _ = new_person(tmp_path, "bob")
        first, _ = await put_for(net, tmp_path, alice, "one.pdf")
        for name in ("two.pdf", "three.pdf"):
            await put_for(net, tmp_path, bob, name)
        await wallet_knows(net, 0, alice, first)
        asked.clear()
        answered.clear()
        again = await net.ok(0, "wallet", "ls", "--as", str(alice))
        assert [r["record_id"] for r in again["records"]] == [first]
        assert again["scan"] == {"scanned": 0, "rescanned": False, "cursor": 3}
        assert [r.after for r in asked] == [2]  # from the last row scanned: a check
        assert sum(len(r.rows) for r in answered) == 1

        second, _ = await put_for(net, tmp_path, alice, "four.pdf")
        asked.clear()
        answered.clear()
        listed = await wallet_knows(net, 0, alice, second)
        assert [r["record_id"] for r in listed] == [first, second]
        assert asked[0].after == 2 and sum(len(r.rows) for r in answered) == 2

        # The cache: one file per view key, 0600, sealed (no key, id or grant readable).
        person = person_of(alice)
        path = wallet_cache.cache_path(net.dirs[0], person.view)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        sealed = path.read_bytes()
        for secret in (person.view.secret, person.spend_public, bytes.fromhex(first)):
            assert secret not in sealed
        # The same view key, from a view-only file, reads the same cache.
        by_view = await net.ok(0, "wallet", "ls", "--as", str(view_file(tmp_path, alice)))
        assert by_view["scan"]["scanned"] == 0 and len(by_view["records"]) == 2

        # A cursor beyond the daemon's total (its order changed): scanned again from 0.
        state = wallet_cache.load(net.dirs[0], person.view)
        state.cursor = 10**6
        wallet_cache.save(net.dirs[0], person.view, state)
        rescan = await net.ok(0, "wallet", "ls", "--as", str(alice))
        assert rescan["scan"] == {"scanned": 4, "rescanned": True, "cursor": 4}
        assert [r["record_id"] for r in rescan["records"]] == [first, second]
        # A row at the cursor that is not the one remembered: the same.
        state = wallet_cache.load(net.dirs[0], person.view)
        state.last_entry = b"\x01" * 32
        wallet_cache.save(net.dirs[0], person.view, state)
        assert (await net.ok(0, "wallet", "ls", "--as", str(alice)))["scan"]["rescanned"]
        # A damaged cache is ignored, and replaced.
        path.write_bytes(b"garbage" * 10)
        fresh = await net.ok(0, "wallet", "ls", "--as", str(alice))
        assert fresh["scan"]["scanned"] == 4 and len(fresh["records"]) == 2
        # Another person's cache is another file; his wallet lists none of hers.
        assert (await net.ok(0, "wallet", "ls", "--as", str(bob)))["records"] != []
        bobs = wallet_cache.cache_path(net.dirs[0], person_of(bob).view)
        assert bobs != path and bobs.exists()


def test_a_cache_under_another_view_key_does_not_open(tmp_path: Path) -> None:
    mine, other = PersonKey(os.urandom(32)).view, PersonKey(os.urandom(32)).view
    state = wallet_cache.ScanState(7, b"\x02" * 32, [])
    wallet_cache.save(tmp_path, mine, state)
    assert wallet_cache.load(tmp_path, mine) == state
    stolen = ViewKey(other.secret, other.spend_public)
    wallet_cache.cache_path(tmp_path, stolen).write_bytes(
        wallet_cache.cache_path(tmp_path, mine).read_bytes()
    )
    assert wallet_cache.load(tmp_path, stolen) == wallet_cache.ScanState()
