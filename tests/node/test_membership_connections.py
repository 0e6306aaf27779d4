"""Certificates shown right after the handshake: members connect, anyone else is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from nacl.signing import SigningKey

from node.net.channel import open_client_channel
from node.net.errors import PeerUnreachable
from node.net.membership import Membership
from node.sim.memory import MemoryNetwork
from node.sim.nodes import segments
from protocol.errors import RemoteProtocolError
from protocol.membership.certificate import issue
from protocol.net.messages import Ping, Pong
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, small_config
from tests.node.nodes import address_of, start_node
from tests.protocol.keys import NETWORK, seed, signing_key

AUTHORITY = signing_key("authority")
ROGUE = signing_key("rogue authority")
NOW_MS = 10_000


def member(
    site: str, authority: SigningKey = AUTHORITY, expires_at: int = 0
) -> Callable[[bytes], Membership]:
    """A node's Membership: certified by `authority`, trusting that authority, and
    living at NOW_MS (an intruder's clock is set where its own certificate holds)."""

    def make(public_key: bytes) -> Membership:
        cert = issue(authority, public_key, site, issued_at=0, expires_at=expires_at)
        return Membership(
            own=cert,
            authorities={bytes(authority.verify_key)},
            clock_ms=lambda: 1 if expires_at else NOW_MS,
        )

    return make


async def test_members_connect_and_learn_each_others_sites(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, network.transport(), "a", membership=member("hospital-a"))
        b = await start_node(nursery, network.transport(), "b", membership=member("hospital-b"))
        connection = await b.connect(address_of(a))
        assert await connection.request(Ping(1), Pong) == Pong(1)
        assert a.membership is not None and b.membership is not None
        assert b.membership.site_of(a.public_key) == "hospital-a"
        assert a.membership.site_of(b.public_key) == "hospital-b"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("intruder", "why"),
    [
        (None, "left before showing"),  # a node with the network key but no certificate
        (member("hospital-x", authority=ROGUE), "not signed by this network"),
        (member("hospital-x", expires_at=NOW_MS), "expired"),
    ],
)
async def test_a_node_without_a_valid_certificate_is_refused_both_ways(
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    intruder: Callable[[bytes], Membership] | None,
    why: str,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        honest = await start_node(
            nursery, network.transport(), "honest", membership=member("hospital-a")
        )
        other = await start_node(nursery, network.transport(), "x", membership=intruder)
        for _ in range(3):  # it keeps trying: refused each time, logged once
            if intruder is None:  # it shows nothing and is dropped
                await other.connect(address_of(honest))
            else:  # it learns at once that it was refused
                with pytest.raises(PeerUnreachable, match="refused this node"):
                    await other.connect(address_of(honest))
            await trio.sleep(other.limits.backoff_max)
        await trio.testing.wait_all_tasks_blocked()
        assert honest.peers == [] and honest.stats.refused_uncertified == 3
        refusals = [r for r in caplog.records if r.getMessage() == "refused"]
        assert len(refusals) == 1
        with pytest.raises(PeerUnreachable, match="membership certificate"):
            await honest.connect(address_of(other))  # and the member will not dial it
        assert honest.peers == []
        nursery.cancel_scope.cancel()


async def test_a_certificate_for_another_key_is_refused(autojump_clock: trio.abc.Clock) -> None:
    # A member replays someone else's (valid) certificate under its own key.
    stolen = issue(AUTHORITY, b"v" * 32, "hospital-v", issued_at=0)

    def replay(public_key: bytes) -> Membership:
        membership = member("hospital-x")(public_key)
        membership.own = stolen
        return membership

    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        honest = await start_node(
            nursery, network.transport(), "honest", membership=member("hospital-a")
        )
        thief = await start_node(nursery, network.transport(), "thief", membership=replay)
        with pytest.raises(PeerUnreachable, match="another key"):
            await honest.connect(address_of(thief))
        with pytest.raises(PeerUnreachable):
            await thief.connect(address_of(honest))
        assert honest.peers == [] and honest.stats.refused_uncertified == 1
        nursery.cancel_scope.cancel()


async def test_a_members_site_is_its_certificates_not_what_it_says(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        for site in ("a", "b", "b", "c"):
            await cluster.add(nursery, small_config(), site=site, authority=AUTHORITY)
        liar = await cluster.add(nursery, small_config(), site="a", authority=AUTHORITY)
        liar.shards.site = "hospital-everywhere"  # what its NodeInfo now claims
        honest = cluster.nodes[0]
        info = await honest.records.reach.info_of(liar.contact)
        assert info is not None and info.site == "a"
        assert await honest.records.reach.refresh_sites() == 3
        # Placement over certified sites: at most n - k = 2 indices on site a.
        result = await honest.records.put(
            segments(b"x" * 50_000, 64 * 1024), metadata=RecordMetadata()
        )
        on_a = [
            i
            for i, node in result.holders.items()
            if node
            in {
                n.public_key
                for n in cluster.nodes
                if n.parts.membership is not None and n.parts.membership.own.site == "a"
            }
        ]
        assert len(on_a) <= 2 and not result.verdict.degraded
        nursery.cancel_scope.cancel()


async def test_a_connection_ends_when_the_peers_certificate_expires(
    autojump_clock: trio.abc.Clock,
) -> None:
    now = [NOW_MS]

    def clocked(site: str, expires_at: int = 0) -> Callable[[bytes], Membership]:
        def make(public_key: bytes) -> Membership:
            cert = issue(AUTHORITY, public_key, site, issued_at=0, expires_at=expires_at)
            return Membership(
                own=cert, authorities={bytes(AUTHORITY.verify_key)}, clock_ms=lambda: now[0]
            )

        return make

    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        honest = await start_node(nursery, network.transport(), "honest", membership=clocked("a"))
        leaving = await start_node(
            nursery, network.transport(), "leaving", membership=clocked("b", NOW_MS + 3_600_000)
        )
        connection = await leaving.connect(address_of(honest))
        assert honest.membership is not None
        assert honest.membership.site_of(leaving.public_key) == "b"
        now[0] += 2 * 3_600_000  # its certificate ran out; it keeps pinging
        for nonce in range(3):
            if connection.closed.is_set():
                break
            await connection.request(Ping(nonce), Pong)
            await trio.sleep(20)
        await trio.sleep(61)
        assert honest.peers == [] and connection.closed.is_set()
        assert honest.membership.site_of(leaving.public_key) is None
        nursery.cancel_scope.cancel()


async def test_before_admission_a_peer_may_send_only_a_small_message(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A 4 MiB "certificate" is refused at its length prefix, not buffered for 10 s.
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        honest = await start_node(nursery, network.transport(), "honest", membership=member("a"))
        assert honest.address is not None
        stream = await network.transport().connect(honest.address)
        channel = await open_client_channel(
            stream,
            network_key=NETWORK,
            identity=signing_key("big sender"),
            server_public=honest.public_key,
            ephemeral_seed=seed("big eph"),
        )
        started = trio.current_time()
        sealed = bytearray()
        size = channel._writer.seal_into(sealed, (4 * 1024 * 1024).to_bytes(4, "big"))
        await channel.stream.send_all(sealed[:size])  # a length prefix, then nothing
        with pytest.raises(RemoteProtocolError):  # it is dropped: a goodbye, then the end
            while True:
                if await channel.receive() is None:
                    raise RemoteProtocolError("goodbye")
        await trio.testing.wait_all_tasks_blocked()
        assert honest.stats.refused_uncertified == 1 and honest.peers == []
        assert trio.current_time() - started < honest.limits.handshake_timeout
        nursery.cancel_scope.cancel()


async def test_a_revoked_node_is_refused_and_dropped_whatever_its_certificate(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        honest = await start_node(nursery, network.transport(), "honest", membership=member("a"))
        other = await start_node(nursery, network.transport(), "other", membership=member("c"))
        revoked = await start_node(nursery, network.transport(), "gone", membership=member("b"))
        connection = await revoked.connect(address_of(honest))
        await other.connect(address_of(honest))
        assert honest.membership is not None
        honest.membership.revoked = frozenset({revoked.public_key})  # config, restarted
        await trio.sleep(61)  # the next re-check drops it
        assert connection.closed.is_set()
        assert [p.remote_public_key for p in honest.peers] == [other.public_key]
        assert honest.membership.site_of(revoked.public_key) is None
        with pytest.raises(PeerUnreachable, match="refused this node"):
            await revoked.connect(address_of(honest))
        with pytest.raises(PeerUnreachable, match="revoked"):
            await honest.connect(address_of(revoked))
        nursery.cancel_scope.cancel()
