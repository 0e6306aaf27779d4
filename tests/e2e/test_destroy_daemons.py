"""The 'destroy any record' attack on real daemons, by an in-process member with the
network key and a valid certificate: it fetches a victim's manifest, registers a record
of its own whose manifest names the victim's blocks (completed without sending a byte:
the holders already have them), and tombstones it; another copy it drops. Every holder
deletes the attacker's record, and none of the victim's blocks: the victim's record
stays healthy and reads back intact."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from node.assembly import Node
from node.config.datadir import DataDir
from node.sim.localnet import Daemon, Network
from protocol.dht.contact import Contact
from protocol.ids import record_dht_key
from protocol.ledger.entries import RecordBody, TombstoneBody, derive_record_id
from protocol.records.messages import (
    DropShards,
    GetHoldings,
    GetManifest,
    HoldingsFound,
    ManifestFound,
    ShardsStored,
    StoreShards,
)
from storage.codec.manifest import Manifest
from storage.store.packs import read_locations
from tests.e2e.member import Member

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 5, "repair_interval": 3600},
    "gossip": {"interval": 0.5},
}
ATTACKER = 5


def block_files(node: Daemon) -> set[str]:
    """The digests of a node's blocks (read-only beside the running daemon)."""
    return {digest.hex() for digest, _ in read_locations(node.data_dir)}


async def holders_and_manifest(
    attacker: Node, record_id: bytes
) -> tuple[dict[bytes, tuple[Contact, tuple[int, ...]]], Manifest]:
    found = await attacker.dht.find_providers(record_dht_key(record_id))
    contacts = [Contact.from_info(p.provider) for p in found.providers]
    holders: dict[bytes, tuple[Contact, tuple[int, ...]]] = {}
    manifest: Manifest | None = None
    for contact in contacts:
        held = await attacker.port.call(contact, GetHoldings(record_id, False), 10.0)
        assert isinstance(held, HoldingsFound)
        if held.complete:
            holders[contact.public_key] = (contact, held.complete)
        if manifest is None:  # manifests are public: block hashes and sealed metadata
            answer = await attacker.port.call(contact, GetManifest(record_id), 10.0)
            assert isinstance(answer, ManifestFound) and answer.manifest is not None
            manifest = Manifest.decode(answer.manifest)
    assert manifest is not None and holders
    return holders, manifest


async def attack(attacker: Node, victim_record: bytes) -> dict[str, bytes]:
    """Plant two fake records over the victim's blocks; tombstone one, drop the other."""
    holders, manifest = await holders_and_manifest(attacker, victim_record)
    fakes: dict[str, bytes] = {}
    for how in ("tombstone", "drop"):
        nonce = os.urandom(16)
        fake_id = derive_record_id(attacker.public_key, nonce)
        fake = dataclasses.replace(manifest, record_id=fake_id)
        for contact, indices in holders.values():
            for index in indices:
                reply = await attacker.port.call(
                    contact,
                    StoreShards(fake_id, fake.encode(), index, 0, (), True, nonce),
                    10.0,
                )
                assert isinstance(reply, ShardsStored)
        if how == "tombstone":
            await attacker.ledger.append_all(
                [
                    RecordBody(
                        fake_id,
                        nonce,
                        fake.digest(),
                        1000,
                        manifest.k,
                        manifest.n,
                        attacker.public_key,
                    ),
                    TombstoneBody(fake_id),
                ]
            )
        else:
            for contact, _ in holders.values():
                await attacker.port.call(contact, DropShards(fake_id), 10.0)
        fakes[how] = fake_id
    return fakes


def test_a_member_cannot_delete_a_victims_blocks_through_a_record_of_its_own(
    tmp_path: Path, daemons: list[Daemon], members: list[Member]
) -> None:
    net = Network(tmp_path / "net", ATTACKER + 1, SETTINGS)
    daemons.extend(net.nodes[:ATTACKER])
    for index in range(ATTACKER):
        net.start(index)
    source = tmp_path / "victim.bin"
    source.write_bytes(os.urandom(3 * 2**20))  # three segments: 15 blocks in all
    record_id = net.cli(0, "put", str(source))["record_id"]
    before = {i: block_files(net.nodes[i]) for i in range(ATTACKER)}
    assert sum(len(files) for files in before.values()) >= 15

    victim = bytes.fromhex(record_id)
    member = Member(DataDir(net.nodes[ATTACKER].data_dir), lambda node: attack(node, victim))
    members.append(member)
    fakes = member.start()

    deleted_fake = fakes["tombstone"].hex()[:16]
    for index in range(ATTACKER):  # every holder saw the tombstone and deleted the fake
        if before[index]:
            net.nodes[index].wait_for("record shards deleted", timeout=60, record=deleted_fake)
    for index in range(ATTACKER):  # and not one of the victim's blocks
        assert before[index] <= block_files(net.nodes[index]), f"node {index} lost blocks"
    (report,) = net.cli(0, "check", record_id)["records"]
    assert report["health"]["healthy"]
    out = tmp_path / "back.bin"
    net.cli(0, "get", record_id, "-o", str(out))
    assert out.read_bytes() == source.read_bytes()
