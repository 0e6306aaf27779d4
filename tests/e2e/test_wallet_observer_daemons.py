"""Issue 14's observer test, on real daemons: what every member holds says nothing that
ties a patient's records together, and her wallet (the CLI, her key in its process)
still finds, reads, attests, shares and revokes them.

Five daemons on 127.0.0.1; hospitals 0, 1 and 2 each put one record for Alice and one
each for two unrelated patients, interleaved, all granted to addresses. From every
node's ledger (raw entries) and data files: no byte string of 8 bytes or more appears
in two of her grant entries unless it appears in unrelated grant entries too; her
long-term public key (and her view key's public part) appears nowhere; ledger and
manifest sizes are Padmé lengths. Her wallet lists exactly her records, Bob's none of
them; she shares one with a new key, which reads it; she revokes it, and the nodes
refuse that key's reads; her attestation verifies, and ties to her grant only for a
view key that is hers.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.cli.wallet import Mine, find_mine
from node.control.client import ControlClient, ControlFailed, call
from node.daemon import HOLDINGS_FILE
from node.sim.localnet import Daemon, Network, medvault
from protocol.control import commands
from protocol.control.replies import GetHeader, LedgerReply, StealthGrantsReply
from protocol.ledger.entries import (
    AttestBody,
    ClaimBody,
    Entry,
    RecordBody,
    StealthGrantBody,
    decode_entry,
    grant_context,
)
from protocol.privacy import PersonKey, open_grant
from protocol.records import permit
from storage.codec.manifest import Manifest
from storage.codec.padme import is_padded
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.slow

HOSPITALS = 3
NODES = 5
GRAM = 8


def settings() -> dict[str, dict[str, Any]]:
    return {
        "storage": {"k": 3, "n": 5, "happy": 4, "repair_interval": 600},
        "gossip": {"interval": 0.5},
    }


def entries(net: Network, index: int) -> list[Entry]:
    reply = call(net.nodes[index].data_dir, commands.Ledger(None, 0), LedgerReply)
    return [decode_entry(row.raw) for row in reply.entries]


def same_ledgers(net: Network, at_least: int) -> Callable[[], bool]:
    def check() -> bool:
        seen = [{e.hash for e in entries(net, i)} for i in range(NODES)]
        return len(seen[0]) >= at_least and all(s == seen[0] for s in seen)

    return check


def grams(data: bytes) -> set[bytes]:
    return {data[i : i + GRAM] for i in range(len(data) - GRAM + 1)}


def blanked(entry: Entry) -> bytes:
    """The entry with its record id and signature zeroed: both are public and random, and
    two of hers whose id or signature happens to share a first byte with the bytes before
    it (the id: about 1 run in 85; the signature, after the body's last field: about 1 in
    256 per pair, seen once in CI) would look like a link."""
    raw = entry.raw.replace(entry.body.record_id, bytes(len(entry.body.record_id)))
    return raw.replace(entry.signature, bytes(len(entry.signature)))


def person(key_file: Path) -> PersonKey:
    return PersonKey(bytes.fromhex(key_file.read_text().splitlines()[1]))


def test_an_observer_links_nothing_and_her_wallet_does_everything(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", NODES, settings())
    daemons.extend(net.nodes)
    net.start_all()
    keys = {}
    for name in ("alice", "bob", "carol", "newdoc"):
        keys[name] = tmp_path / f"{name}.key"
        medvault("keys", "new", "-o", str(keys[name]))
    address = {n: medvault("keys", "address", str(k)).stdout.strip() for n, k in keys.items()}

    sizes: dict[str, int] = {}
    hers: list[str] = []
    for hospital in range(HOSPITALS):  # interleaved: her entries share a minute only
        for name in ("alice", "bob", "carol"):  # with unrelated ones
            source = tmp_path / f"{name}-{hospital}.bin"
            source.write_bytes(os.urandom(40_000 + 1_000 * hospital + len(name)))
            put = net.cli(hospital, "put", str(source), "--patient", address[name])
            sizes[put["record_id"]] = source.stat().st_size
            if name == "alice":
                hers.append(put["record_id"])
    wait_until("every ledger holds every put", same_ledgers(net, 2 * len(sizes)))

    alice = person(keys["alice"])
    secrets = (alice.spend_public, alice.address.view_public)
    for index in range(NODES):  # the observer: every node's ledger, raw
        _observe(entries(net, index), sizes, hers, secrets)

    # -- her wallet and Bob's -------------------------------------------------------------
    listed = net.cli(3, "wallet", "ls", "--as", str(keys["alice"]))["records"]
    assert sorted(r["record_id"] for r in listed) == sorted(hers)
    assert all(r["size"] == sizes[r["record_id"]] for r in listed)  # true sizes, opened here
    bobs = net.cli(3, "wallet", "ls", "--as", str(keys["bob"]))["records"]
    assert len(bobs) == HOSPITALS and not {r["record_id"] for r in bobs} & set(hers)

    # -- attest, share, read, revoke ------------------------------------------------------
    record = hers[1]  # put at hospital 1
    attested = net.cli(4, "wallet", "attest", record, "--as", str(keys["alice"]))
    shared = net.cli(4, "wallet", "share", record, address["newdoc"], "--as", str(keys["alice"]))
    wait_until("the share reaches node 2", lambda: _knows(net, 2, shared["entry"]))
    copy = tmp_path / "newdoc.bin"
    net.cli(2, "wallet", "get", record, "--as", str(keys["newdoc"]), "--out", str(copy))
    assert copy.read_bytes() == (tmp_path / "alice-1.bin").read_bytes()

    p = shared["grant_key"]
    net.cli(4, "wallet", "revoke", record, p, "--as", str(keys["alice"]))
    wait_until("every node ends the shared grant", lambda: _ended_everywhere(net, record, p))
    refused = net.run(2, "wallet", "get", record, "--as", str(keys["newdoc"]), "--out", "x")
    assert refused.returncode == 1 and "has ended" in refused.stderr
    # Past the CLI's own check: permits signed by the revoked key, straight to the daemon.
    newdoc = person(keys["newdoc"])
    rows = call(net.nodes[2].data_dir, commands.StealthGrants(0), StealthGrantsReply).rows
    (found,) = find_mine(newdoc.view, iter(rows))
    assert found.grant.one_time.hex() == p
    for index in range(NODES):
        assert _read_refused(net, index, record, newdoc, found), f"node {index} served it"

    _attestation_ties_only_for_her(net, attested, record, keys)

    net.stop_all()  # manifests and every data file, with the daemons stopped
    for node in net.nodes:
        _files_padded_and_keyless(node.data_dir, sizes, secrets)


def _knows(net: Network, index: int, entry: str) -> bool:
    return any(e.hash.hex() == entry for e in entries(net, index))


def _ended_everywhere(net: Network, record: str, p: str) -> bool:
    for index in range(NODES):
        rows = call(
            net.nodes[index].data_dir,
            commands.StealthGrants(0, record_id=bytes.fromhex(record)),
            StealthGrantsReply,
        ).rows
        if any(row.grant[34:66].hex() == p and row.current for row in rows):
            return False
    return True


def _read_refused(net: Network, index: int, record: str, who: PersonKey, found: Mine) -> bool:
    """Whether node `index` refuses a read signed by the revoked grant's key."""
    rid = bytes.fromhex(record)
    opened = open_grant(who, found.grant, grant_context(rid, found.row.index))
    key = opened.one_time_key
    root = net.nodes[index].data_dir
    node = net.keys[index]
    permits = permit.sign_series(
        key, rid, bytes.fromhex(node), int(time.time() * 1000), 2, read_id=bytes(16)
    )
    try:
        with ControlClient(root) as client:
            client.request(commands.Get(rid, key.public, permits), GetHeader)
    except ControlFailed as exc:
        return "no grant" in str(exc)
    return False


def _observe(
    ledger: list[Entry], sizes: dict[str, int], hers: list[str], secrets: tuple[bytes, ...]
) -> None:
    """What a curious member sees in one ledger: nothing that links her grants, her keys
    nowhere, padded sizes."""
    grants = [e for e in ledger if isinstance(e.body, StealthGrantBody)]
    assert len(grants) == len(sizes)
    mine = [e for e in grants if e.body.record_id.hex() in hers]
    others = [e for e in grants if e.body.record_id.hex() not in hers]
    unrelated = set().union(*(grams(blanked(e)) for e in others))
    for i, first in enumerate(mine):
        for second in mine[i + 1 :]:
            shared = grams(blanked(first)) & grams(blanked(second))
            assert shared <= unrelated, f"{len(shared - unrelated)} strings link her grants"
    for entry in ledger:
        assert not any(secret in entry.raw for secret in secrets)
        if isinstance(entry.body, RecordBody):
            true = sizes[entry.body.record_id.hex()]
            assert entry.body.size != true and is_padded(entry.body.size)


def _attestation_ties_only_for_her(
    net: Network, attested: dict[str, str], record: str, keys: dict[str, Path]
) -> None:
    """Her attestation is accepted everywhere, signed by a key P that her view key finds
    among her grants and no other person's view key finds among theirs."""
    author = b""
    for index in range(NODES):
        reply = call(net.nodes[index].data_dir, commands.Ledger(None, 0), LedgerReply)
        (row,) = [r for r in reply.entries if decode_entry(r.raw).hash.hex() == attested["entry"]]
        attest = decode_entry(row.raw)  # the signature verifies
        assert isinstance(attest.body, AttestBody | ClaimBody) and row.rejected is None
        author = attest.author
    assert author.hex() == attested["grant_key"]
    rows = call(net.nodes[0].data_dir, commands.StealthGrants(0), StealthGrantsReply).rows
    ties = [
        m for m in find_mine(person(keys["alice"]).view, iter(rows)) if m.grant.one_time == author
    ]
    assert len(ties) == 1 and ties[0].row.record_id.hex() == record
    for stranger in ("bob", "carol", "newdoc"):
        theirs = find_mine(person(keys[stranger]).view, iter(rows))
        assert all(m.grant.one_time != author for m in theirs)


def _files_padded_and_keyless(
    data_dir: Path, sizes: dict[str, int], secrets: tuple[bytes, ...]
) -> None:
    """A stopped node's manifests carry padded sizes; no file holds her public keys."""
    with sqlite3.connect(data_dir / HOLDINGS_FILE) as db:
        manifests = [Manifest.decode(m) for (m,) in db.execute("SELECT manifest FROM records")]
    assert manifests
    for manifest in manifests:
        assert is_padded(manifest.size) and manifest.size != sizes[manifest.record_id.hex()]
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret not in data and secret.hex().encode() not in data, path
