"""Ledger gossip on the seeded simulated network, under the autojump clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgpack
import nacl.signing
import trio

from node.config.gossip import GossipConfig
from node.sim.ledger_cluster import GossipCluster, GossipNode
from node.sim.network import LinkModel, SimNetwork, deterministic_scheduling
from protocol.ledger.entries import (
    GrantBody,
    RecordBody,
    RevokeBody,
    derive_record_id,
    sign_entry,
)
from protocol.ledger.messages import PushEntries

INTERVAL = 0.2


@asynccontextmanager
async def ledger_cluster(
    seed: int, size: int, *, loss: float = 0.0, config: GossipConfig | None = None
) -> AsyncIterator[tuple[GossipCluster, random.Random]]:
    rng = random.Random(seed)
    network = SimNetwork(seed, LinkModel(loss=loss))
    cluster = GossipCluster(network, config or GossipConfig(interval=INTERVAL), rng)
    with deterministic_scheduling(seed):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery, size)
            yield cluster, rng
            nursery.cancel_scope.cancel()


async def new_record(
    node: GossipNode, rng: random.Random, signer: nacl.signing.SigningKey | None = None
) -> bytes:
    owner = bytes((signer or node.identity).verify_key)
    nonce = rng.randbytes(16)
    record_id = derive_record_id(owner, nonce)
    await node.ledger.append(
        RecordBody(record_id, nonce, rng.randbytes(32), 100, 4, 8, owner), signer
    )
    return record_id


async def settle(cluster: GossipCluster, limit: float = 30.0) -> float:
    """Wait until every node holds the same state; returns how long it took."""
    return await cluster.wait_for(cluster.converged, limit)


async def test_an_entry_reaches_99_percent_of_200_nodes_fast_despite_loss(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with ledger_cluster(seed=31, size=200, loss=0.10) as (cluster, rng):
        await trio.sleep(1)
        writer = cluster.nodes[7]
        record_id = await new_record(writer, rng)
        head = writer.ledger.book.head_entry(writer.contact.public_key)
        assert head is not None and head.record_id == record_id
        took = await cluster.wait_for(lambda: cluster.coverage(head.hash) >= 0.99, limit=30)
        assert took <= 2.0  # the budget: 10 rounds of 200 ms
        await settle(cluster)
        assert cluster.coverage(head.hash) == 1.0
        assert cluster.network.lost > 0


async def test_anti_entropy_alone_converges(autojump_clock: trio.abc.Clock) -> None:
    config = GossipConfig(interval=INTERVAL, push_fanout=0)  # no push: rounds only
    async with ledger_cluster(seed=32, size=100, loss=0.10, config=config) as (cluster, rng):
        for node in rng.sample(cluster.nodes, 5):
            await new_record(node, rng)
        took = await settle(cluster)
        assert took <= 40 * INTERVAL


async def test_partition_writes_on_both_sides_heal_and_revoke_wins(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with ledger_cluster(seed=33, size=60) as (cluster, rng):
        west, east = cluster.nodes[:30], cluster.nodes[30:]
        owner_node = west[0]
        patient = nacl.signing.SigningKey(rng.randbytes(32))
        clinician = nacl.signing.SigningKey(rng.randbytes(32))  # a person using two hospitals
        patient_key = bytes(patient.verify_key)
        owned = await new_record(owner_node, rng)
        await owner_node.ledger.append(GrantBody(owned, patient_key, rng.randbytes(80), 0))
        personal = await new_record(west[1], rng, signer=clinician)
        await settle(cluster)

        cluster.network.partition([n.address for n in west], [n.address for n in east])
        await owner_node.ledger.append(RevokeBody(owned, patient_key))  # revoked in the west...
        # ...while the east still sees the grant. The clinician grants in the west
        # and revokes in the east: two entries with the same seq, a fork.
        await west[2].ledger.append(
            GrantBody(personal, patient_key, rng.randbytes(80), 0), clinician
        )
        await east[0].ledger.append(RevokeBody(personal, patient_key), clinician)
        east_record = await new_record(east[1], rng)
        await east[1].ledger.append(GrantBody(east_record, patient_key, rng.randbytes(80), 0))
        await trio.sleep(3)
        assert east[5].ledger.state().grant_for(owned, patient_key, 0) is not None  # stale side
        assert west[5].ledger.state().grant_for(owned, patient_key, 0) is None

        cluster.network.heal()
        await settle(cluster)
        state = cluster.nodes[0].ledger.state()
        assert len(cluster.digests()) == 1
        assert state.grant_for(owned, patient_key, 0) is None  # the revoke won
        assert state.grant_for(personal, patient_key, 0) is None  # revoke wins the fork
        assert state.grant_for(east_record, patient_key, 0) is not None
        assert bytes(clinician.verify_key) in state.flagged


async def test_bad_entries_are_rejected_everywhere_and_change_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with ledger_cluster(seed=34, size=40) as (cluster, rng):
        honest = cluster.nodes[0]
        record_id = await new_record(honest, rng)
        grant = await honest.ledger.append(
            GrantBody(record_id, rng.randbytes(32), rng.randbytes(80), 0)
        )
        await settle(cluster)
        reference = cluster.nodes[5].ledger.state().digest()

        mallory = nacl.signing.SigningKey(rng.randbytes(32))
        forged = bytearray(grant.raw)
        forged[-5] ^= 1  # signature no longer verifies
        fields = msgpack.unpackb(grant.raw, raw=False)
        fields[1] = bytes(mallory.verify_key)  # claims another author
        impostor = msgpack.packb(fields, use_bin_type=True)
        non_owner = sign_entry(
            mallory,
            1,
            b"",
            1,
            GrantBody(record_id, bytes(mallory.verify_key), rng.randbytes(80), 0),
        )
        truncated = grant.raw[:-7]
        bad = (bytes(forged), impostor, non_owner.raw, truncated, grant.raw)  # grant.raw: a replay
        attacker = "mallory:1"  # pushes through the network like any peer would
        for target in rng.sample(cluster.nodes, 10):
            await cluster.network.call(
                attacker, bytes(mallory.verify_key), target.contact, PushEntries(bad), 5.0
            )
        await trio.sleep(5)
        # The non-owner's grant broke a feed rule: it is kept as evidence everywhere (its
        # author flagged, its feed frozen), so every node agrees on a new digest.
        (agreed,) = cluster.digests()
        assert agreed != reference
        for node in cluster.nodes:
            assert node.ledger.state().grant_for(record_id, bytes(mallory.verify_key), 0) is None
            assert node.ledger.state().flagged == {bytes(mallory.verify_key): (non_owner.hash,)}
            assert node.ledger.book.frozen == {bytes(mallory.verify_key): 1}
        assert sum(n.ledger.rejected_count for n in cluster.nodes) >= 30


async def test_a_node_back_from_an_outage_catches_up(autojump_clock: trio.abc.Clock) -> None:
    async with ledger_cluster(seed=35, size=50) as (cluster, rng):
        sleeper = cluster.nodes[9]
        cluster.network.crash(sleeper.address)
        for node in rng.sample(cluster.nodes[10:], 8):
            await new_record(node, rng)
        await trio.sleep(5)
        assert len(sleeper.ledger.book) == 0
        cluster.network.revive(sleeper.address)
        await settle(cluster)
        assert len(sleeper.ledger.book) == 8
