"""Authority-signed revocations across whole nodes: applied at once, gossiped to every
node, kept on disk; what a member gains by pushing false ones is nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trio
import trio.testing

import protocol.membership.revocation as revocation_module
from node.assembly import Node
from node.net.dispatch import base_dispatcher
from node.net.errors import PeerUnreachable, RemoteError
from node.net.membership import Membership
from node.net.revocations import (
    REVOCATIONS_FILE,
    RevocationService,
    load_revocations,
)
from node.sim.memory import MemoryNetwork
from protocol.ids import node_id
from protocol.membership.certificate import issue
from protocol.membership.messages import MAX_SHARED, RevocationsTaken, ShareRevocations
from protocol.membership.revocation import Revocation, revoke
from protocol.net.messages import Message
from tests.node.cluster import Cluster, holders_of, read_all, small_config
from tests.node.nodes import address_of, start_node
from tests.node.test_repair import DATA_SIZE, put_record
from tests.protocol.keys import signing_key

AUTHORITY = signing_key("authority")
OTHER_AUTHORITY = signing_key("other authority")


def membership(node: Node) -> Membership:
    assert node.parts.membership is not None
    return node.parts.membership


def service(node: Node) -> RevocationService:
    assert node.revocations is not None
    return node.revocations


async def knows(node: Node, key: bytes) -> None:
    """Return once `node` has learned a revocation of `key`."""
    while key not in membership(node).revocations:
        await service(node).changed()


async def certified_cluster(
    nursery: trio.Nursery, tmp_path: Path, count: int, **storage: object
) -> Cluster:
    cluster = Cluster(tmp_path)
    for index in range(count):
        await cluster.add(nursery, small_config(**storage), site=f"s{index}", authority=AUTHORITY)
    return cluster


async def test_a_published_revocation_reaches_every_node_which_drops_and_refuses_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 6)
        first, *others = cluster.nodes
        gone = others[-1]
        stay = [n for n in cluster.nodes if n is not gone]
        for node in stay:  # everyone talks to the node before it is revoked
            await node.manager.connect(address_of(gone.manager))
        assert all(gone.public_key in {p.remote_public_key for p in n.manager.peers} for n in stay)

        published = await service(first).publish(revoke(AUTHORITY, gone.public_key, revoked_at=1))
        assert published.new and published.pushed >= 1
        for node in stay:
            await knows(node, gone.public_key)
        await trio.testing.wait_all_tasks_blocked()
        for node in stay:
            assert gone.public_key not in {p.remote_public_key for p in node.manager.peers}
            assert node.dht.routing.get(node_id(gone.public_key)) is None
            assert membership(node).site_of(gone.public_key) is None
            with pytest.raises(PeerUnreachable, match="revoked"):
                await node.manager.connect(address_of(gone.manager))
        assert gone.manager.peers == []
        with pytest.raises(PeerUnreachable, match="refused this node"):
            await gone.manager.connect(address_of(first.manager))

        # Gossip ended: a second publication changes nothing and pushes nothing.
        again = await service(others[0]).publish(revoke(AUTHORITY, gone.public_key, revoked_at=2))
        assert not again.new and again.pushed == 0
        nursery.cancel_scope.cancel()


async def test_a_node_handed_its_own_revocation_spreads_it_and_is_dropped_everywhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Each receiver closes the very connection the push arrived on: gossip goes on.
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 5)
        gone = cluster.nodes[1]
        with trio.fail_after(600):  # (a handler waiting on its own connection hung here)
            await service(gone).publish(revoke(AUTHORITY, gone.public_key, revoked_at=1))
            for node in cluster.nodes:
                await knows(node, gone.public_key)
        await trio.testing.wait_all_tasks_blocked()
        assert gone.manager.peers == []
        for node in cluster.nodes:
            assert gone.public_key not in {p.remote_public_key for p in node.manager.peers}
        nursery.cancel_scope.cancel()


async def test_a_node_that_connects_later_learns_the_revocations_at_connect(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 3)
        gone = cluster.nodes[2]
        await service(cluster.nodes[0]).publish(revoke(AUTHORITY, gone.public_key, revoked_at=1))
        newcomer = await cluster.add(nursery, small_config(), site="new", authority=AUTHORITY)
        with trio.fail_after(60):
            await knows(newcomer, gone.public_key)
        nursery.cancel_scope.cancel()


async def test_a_revocation_is_relayed_by_nodes_that_learn_it_from_a_peer(
    autojump_clock: trio.abc.Clock,
) -> None:
    # a - b - c in a line: a and c never connect, yet c learns what a published.
    network = MemoryNetwork()
    services: dict[str, RevocationService] = {}

    def certified(name: str) -> Membership:
        public = bytes(signing_key(f"node {name}").verify_key)
        return Membership(
            own=issue(AUTHORITY, public, name, issued_at=0),
            authorities={bytes(AUTHORITY.verify_key)},
            clock_ms=lambda: 10_000,
        )

    async with trio.open_nursery() as nursery:
        managers = {}
        for name in "abc":
            dispatcher = base_dispatcher()
            manager = await start_node(
                nursery,
                network.transport(),
                name,
                dispatcher=dispatcher,
                membership=lambda key, name=name: certified(name),  # type: ignore[misc]
            )
            assert manager.membership is not None
            services[name] = RevocationService(membership=manager.membership, manager=manager)
            services[name].install(dispatcher)
            manager.on_connect = services[name].greet
            await nursery.start(services[name].serve)
            managers[name] = manager
        await managers["a"].connect(address_of(managers["b"]))
        await managers["b"].connect(address_of(managers["c"]))
        target = bytes(signing_key("somebody").verify_key)
        await services["a"].publish(revoke(AUTHORITY, target, revoked_at=1))
        while target not in managers["c"].membership.revocations:  # type: ignore[union-attr]
            await services["c"].changed()
        await trio.testing.wait_all_tasks_blocked()
        assert [len(s.known) for s in services.values()] == [1, 1, 1]
        nursery.cancel_scope.cancel()


async def test_repair_moves_the_indices_of_a_revoked_holder_elsewhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 8)
        writer = cluster.nodes[0]
        data = os.urandom(DATA_SIZE)
        record_id = await put_record(cluster, writer, data)
        gone = next(n for n in holders_of(cluster, record_id) if n is not writer)
        lost = set(gone.shards.holdings.indices(record_id)[0])
        await service(writer).publish(revoke(AUTHORITY, gone.public_key, revoked_at=1))
        live = [n for n in cluster.nodes if n is not gone]
        for node in live:
            await knows(node, gone.public_key)
        before = await writer.repairer.check(record_id)
        assert lost <= set(before.missing) and gone.public_key not in before.holders

        for node in [n for n in holders_of(cluster, record_id) if n is not gone]:
            await node.upkeep.run_pass()  # the coordinator among them repairs
        after = await writer.repairer.check(record_id)
        assert after.healthy and gone.public_key not in after.holders
        assert await read_all(writer, record_id) == data
        nursery.cancel_scope.cancel()


async def push(liar: Node, honest: Node, raws: list[bytes]) -> Message:
    return await liar.port.call(honest.contact, ShareRevocations(tuple(raws)), 5.0)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda liar, victim: revoke(liar, victim, revoked_at=1).encode(), id="self"),
        pytest.param(
            lambda liar, victim: revoke(OTHER_AUTHORITY, victim, revoked_at=1).encode(),
            id="other-authority",
        ),
        pytest.param(lambda liar, victim: b"\x95\x01garbage", id="malformed"),
    ],
)
async def test_a_member_pushing_a_revocation_nobody_authorised_changes_nothing(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    forge: object,
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 3)
        honest, victim, liar = cluster.nodes
        raw = forge(liar.parts.identity, victim.public_key)  # type: ignore[operator]
        for _ in range(100):
            assert await push(liar, honest, [raw]) == RevocationsTaken(0)
        assert len(membership(honest).revocations) == 0 and service(honest).refusals == 100
        await honest.manager.connect(address_of(victim.manager))  # still a member
        refused = [r for r in caplog.records if r.getMessage() == "revocation refused"]
        assert len(refused) == 1
        nursery.cancel_scope.cancel()


async def test_a_forged_authority_signature_is_refused_and_ends_the_message(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = [0]
    real = revocation_module.verify

    def counted(revocation: Revocation) -> None:
        checks[0] += 1
        real(revocation)

    monkeypatch.setattr(revocation_module, "verify", counted)
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 3)
        honest, _, liar = cluster.nodes
        authority = bytes(AUTHORITY.verify_key)
        forged = [
            Revocation(index.to_bytes(32, "big"), 1, authority, b"\x07" * 64).encode()
            for index in range(MAX_SHARED)
        ]
        for _ in range(50):  # a flood: each message costs one signature check, not 256
            with pytest.raises(RemoteError, match="bad revocation signature"):
                await push(liar, honest, forged)
        assert checks[0] == 50 and len(membership(honest).revocations) == 0
        refused = [r for r in caplog.records if r.getMessage() == "revocation refused"]
        assert len(refused) == 1
        # The liar is still connected (one bad peer takes nothing down) and nothing changed.
        assert await push(liar, honest, []) == RevocationsTaken(0)
        nursery.cancel_scope.cancel()


async def test_a_flood_of_valid_looking_revocations_costs_no_signature_checks(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = [0]
    real = revocation_module.verify

    def counted(revocation: Revocation) -> None:
        checks[0] += 1
        real(revocation)

    monkeypatch.setattr(revocation_module, "verify", counted)
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 3)
        honest, victim, liar = cluster.nodes
        # Well signed by the liar itself, for 256 distinct keys, 40 times over.
        flood = [
            revoke(liar.parts.identity, os.urandom(32), revoked_at=1).encode()
            for _ in range(MAX_SHARED)
        ]
        for _ in range(40):
            assert await push(liar, honest, flood) == RevocationsTaken(0)
        # And a real revocation repeated: verified once, then a lookup each time.
        real_one = revoke(AUTHORITY, victim.public_key, revoked_at=1).encode()
        for _ in range(40):
            await push(liar, honest, [real_one] * MAX_SHARED)
        assert checks[0] == 1 and len(membership(honest).revocations) == 1
        nursery.cancel_scope.cancel()


async def test_revocations_are_kept_on_disk_and_lines_not_applied_are_not_lost(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / REVOCATIONS_FILE
    foreign = revoke(OTHER_AUTHORITY, b"f" * 32, revoked_at=1).text()
    path.write_text(f"{foreign}\n\nnot a revocation\n", encoding="ascii")

    def fresh() -> Membership:
        public = bytes(signing_key("node disk").verify_key)
        return Membership(
            own=issue(AUTHORITY, public, "a", issued_at=0),
            authorities={bytes(AUTHORITY.verify_key)},
            clock_ms=lambda: 10_000,
        )

    first = fresh()
    loaded = load_revocations(path, first)
    assert loaded.applied == 0 and loaded.aside == [foreign, "not a revocation"]
    assert len(loaded.problems) == 2 and ":1:" in loaded.problems[0]
    async with trio.open_nursery() as nursery:
        manager = await start_node(nursery, MemoryNetwork().transport(), "disk")
        keeper = RevocationService(membership=first, manager=manager, path=path, aside=loaded.aside)
        await nursery.start(keeper.serve)
        await keeper.publish(revoke(AUTHORITY, b"r" * 32, revoked_at=5))
        nursery.cancel_scope.cancel()
    again = fresh()
    reloaded = load_revocations(path, again)
    assert reloaded.applied == 1 and again.is_revoked(b"r" * 32)
    assert reloaded.aside == loaded.aside  # what an admin signed is never dropped
    assert sorted(os.listdir(tmp_path)) == [REVOCATIONS_FILE]  # no temporary left behind


async def test_network_revoked_in_config_keeps_working_beside_revocations(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        cluster = await certified_cluster(nursery, tmp_path, 3)
        honest, listed, other = cluster.nodes
        membership(honest).revoked = frozenset({listed.public_key})
        with pytest.raises(PeerUnreachable, match="revoked"):
            await honest.manager.connect(address_of(listed.manager))
        await service(honest).publish(revoke(AUTHORITY, other.public_key, revoked_at=1))
        assert membership(honest).is_revoked(listed.public_key)
        assert membership(honest).is_revoked(other.public_key)
        nursery.cancel_scope.cancel()
