"""The status page (GET /) on whole nodes: what it shows, that every value is escaped,
who may see it, and that reloading it cannot make the node flood its peers."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import httpx
import pytest
import trio

from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http.service import node_api
from node.http.status_html import PeerView, Reach, StatusView, render
from node.http.status_page import PeerProbe
from node.http.tokens import Scope, TokenStore
from node.logs import LoggedEvent, event, get_logger
from node.records.upkeep import PassSummary
from protocol.control.replies import StatusReply
from protocol.dht.contact import Contact
from tests.node.http.harness import Api, api_cluster

HOSTILE = '<script>alert("x")</script>'


def basic(token_headers: dict[str, str]) -> dict[str, str]:
    """The same token as a browser sends it: the Basic password (any user name)."""
    token = token_headers["Authorization"].removeprefix("Bearer ")
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{token}".encode()).decode()}


async def put(api: Api, data: bytes) -> str:
    writer = api.token(0, "EHR-A", Scope.WRITE)
    reply = await api.clients[0].post("/v1/records", content=data, headers=writer)
    assert reply.status_code == 201, reply.text
    record_id: str = reply.json()["record_id"]
    return record_id


async def test_page_shows_identity_peers_records_and_the_last_pass(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=5, served=1) as api:
        node = api.nodes[0]
        reader = api.token(0, "ops", Scope.READ)
        before = await api.clients[0].get("/", headers=reader)
        assert before.status_code == 200
        assert "no repair pass yet" in before.text
        assert "<dt>in the ledger</dt><dd>0</dd>" in before.text

        await put(api, os.urandom(100_000))  # n = 5 of 5 nodes: node 0 holds an index
        await node.upkeep.run_pass()
        page = await api.clients[0].get("/", headers=reader)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        text = page.text
        assert node.public_key.hex() in text and node.contact.address in text
        peers = len(node.dht.routing.contacts())
        assert peers == 4
        assert f"{peers} peers in the routing table, {peers} answered" in text
        assert "<dt>in the ledger</dt><dd>1</dd>" in text
        assert "<dt>held here</dt><dd>1</dd>" in text
        assert '<dt>healthy</dt><dd><span class="badge ok">1</span>' in text
        assert '<dt>unreadable</dt><dd><span class="badge ok">0</span>' in text
        assert "All is well" in text
        assert "<script" not in text.lower()  # no script of any kind

        # One holder gone: the next pass finds the record below n, the page says so.
        api.cluster.crash(api.nodes[4])
        await node.upkeep.run_pass()
        probe = PeerProbe(node)  # a fresh round (the page's own reuses answers a while)
        peers_now, _ = await probe.peers()
        gone = [p for p in peers_now if p.public_key == api.nodes[4].public_key]
        # Silent, or already evicted from the routing table by the pass's failed calls.
        assert [p.reach for p in gone] in ([], [Reach.SILENT])
        last = node.upkeep.last_pass
        assert last is not None and (last.below_n, last.healthy) == (1, 0)
        text = (await api.clients[0].get("/", headers=reader)).text
        assert '<dt>below n holders</dt><dd><span class="badge bad">1</span>' in text
        assert "Needs attention" in text and "1 record below n holders" in text


async def test_security_headers(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=3, served=1) as api:
        page = await api.clients[0].get("/", headers=api.token(0, "ops", Scope.READ))
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"


async def test_a_logged_warning_appears_escaped(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=3, served=1) as api:
        marker = os.urandom(6).hex()
        event(get_logger("test"), logging.WARNING, "status page test", marker=marker, bad=HOSTILE)
        event(get_logger("test"), logging.INFO, "not a warning", marker=marker + "info")
        text = (await api.clients[0].get("/", headers=api.token(0, "ops", Scope.READ))).text
        assert marker in text and "status page test" in text
        assert marker + "info" not in text  # only WARNING and above
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
        assert "<script" not in text.lower()


def test_every_value_is_escaped() -> None:
    """Whatever a peer, a certificate or a log field says ends up as text."""
    status = StatusReply(
        public_key=b"\x01" * 32,
        node_id=b"\x02" * 20,
        address=HOSTILE,
        site=HOSTILE,
        uptime_s=5.0,
        contacts=1,
        connections=1,
        ledger_entries=3,
        records=1,
        records_held=1,
        store_used_bytes=950,
        store_quota_bytes=1000,
        k=3,
        n=5,
        happy=4,
        segment_size=65536,
        repair_passes=2,
        orphan_pieces=1,
        orphan_bytes=10,
        ledger_caught_up=False,
        revoked_nodes=0,
    )
    peer = PeerView(b"\x03" * 32, b"\x04" * 20, HOSTILE, HOSTILE, Reach.SILENT, False)
    view = StatusView(
        status=status,
        listen=HOSTILE,
        http_listen=HOSTILE,
        peers=[peer],
        peers_asked_ms=0,
        peer_wait_s=3.0,
        last_pass=PassSummary(ended_ms=0, duration_s=1.0, unreadable=1),
        repair_interval_s=60.0,
        warnings=[LoggedEvent(0.0, "WARNING", HOSTILE, HOSTILE, ((HOSTILE, HOSTILE),))],
        now_ms=1000,
    )
    page = render(view)
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 8
    assert "1 record unreadable" in page and "over 90% full" in page


async def test_a_token_is_needed_and_a_browser_may_send_it_as_basic(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=3, served=1) as api:
        client = api.clients[0]
        bare = await client.get("/")
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"].startswith("Basic")  # the browser prompts
        reader = api.token(0, "ops", Scope.READ)
        assert (await client.get("/", headers=basic(reader))).status_code == 200
        assert (await client.get("/", headers=reader)).status_code == 200
        wrong = basic({"Authorization": "Bearer mvt_00_forged"})
        assert (await client.get("/", headers=wrong)).status_code == 401
        api.tokens[0].revoke("ops")
        assert (await client.get("/", headers=basic(reader))).status_code == 401


async def test_public_status_serves_loopback_only(tmp_path: Path) -> None:
    public = HttpConfig(listen="127.0.0.1:0", public_status=True)
    async with api_cluster(tmp_path, count=3, served=1, config=public) as api:
        local = await api.clients[0].get("/")  # the harness's client is 127.0.0.1
        assert local.status_code == 200 and "medvault node" in local.text
        # Only the page: the JSON API still wants a token from loopback too.
        assert (await api.clients[0].get("/v1/status")).status_code == 401

        root = tmp_path / "http-remote"
        root.mkdir()
        app = node_api(api.nodes[0], root, public, ControlOps(api.nodes[0], started=0.0))
        remote = httpx.ASGITransport(app=app, client=("10.1.2.3", 1234))  # nothing is sent
        async with httpx.AsyncClient(transport=remote, base_url="http://node") as client:
            refused = await client.get("/")
            assert refused.status_code == 401
            assert "medvault node" not in refused.text
            _, token = TokenStore(root).new("remote-ops", Scope.READ)  # this app's tokens
            allowed = await client.get("/", headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200


async def test_reloading_the_page_asks_each_peer_once_per_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token holder (or any local process, with public_status) requesting the page a
    hundred times at once makes the node ask its peers once, not a hundred times."""
    async with api_cluster(tmp_path, count=4, served=1) as api:
        node = api.nodes[0]
        reach = node.records.reach
        asked: list[bytes] = []
        honest = reach.site_of

        async def counting(contact: Contact, *, fresh: bool = False) -> str | None:
            asked.append(contact.public_key)
            return await honest(contact, fresh=fresh)

        monkeypatch.setattr(reach, "site_of", counting)
        reader = api.token(0, "ops", Scope.READ)
        statuses: list[int] = []

        async def load() -> None:
            statuses.append((await api.clients[0].get("/", headers=reader)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(load)
        assert statuses == [200] * 100
        contacts = len(node.dht.routing.contacts())
        assert sorted(asked) == sorted(c.public_key for c in node.dht.routing.contacts())
        assert len(asked) == contacts == 3


async def test_a_peer_that_never_answers_does_not_hold_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_cluster(tmp_path, count=3, served=1) as api:
        node = api.nodes[0]
        mute = api.nodes[1].public_key
        honest = node.records.reach.site_of

        async def hangs(contact: Contact, *, fresh: bool = False) -> str | None:
            if contact.public_key == mute:
                await trio.sleep_forever()
            return await honest(contact, fresh=fresh)

        monkeypatch.setattr(node.records.reach, "site_of", hangs)
        probe = PeerProbe(node, wait=0.5)
        peers, _ = await probe.peers()
        assert {p.public_key: p.reach for p in peers}[mute] is Reach.PENDING
        assert len(peers) == 2
