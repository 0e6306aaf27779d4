"""GET /v1/events: an insurer's node streams the claim events of records granted to its
key, with the owner's certificate; a resumed stream repeats nothing; a node without the
grant streams nothing; no token is 401; streams are bounded per token and in all."""

from __future__ import annotations

import logging
from pathlib import Path

import nacl.signing
import pytest
import trio
from starlette.applications import Starlette

from node.assembly import Node
from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http.context import HttpContext
from node.http.service import node_api
from node.http.tokens import Scope, TokenStore
from protocol.claims import event as claims
from tests.node.http.harness import api_cluster
from tests.node.http.sse import Stream, open_stream
from tests.node.test_cli_wallet import wallet_knows
from tests.node.test_cli_wallet_acts import put_for
from tests.node.test_control_cli import controlled, new_person
from tests.protocol.keys import seed

WAIT = 120  # seconds: a guard against a hang on a busy machine, never a expectation


def served(node: Node, root: Path) -> tuple[Starlette, dict[str, str]]:
    """The node's HTTP app and a read token's headers; idle streams beat every 0.2 s."""
    root.mkdir()
    app = node_api(node, root, HttpConfig(listen="127.0.0.1:0"), ControlOps(node, started=0))
    context(app).heartbeat_s = 0.2
    _, token = TokenStore(root).new("insurer-claims", Scope.READ)
    return app, {"Authorization": f"Bearer {token}"}


def context(app: Starlette) -> HttpContext:
    ctx = app.state.medvault
    assert isinstance(ctx, HttpContext)
    return ctx


async def nothing_more(stream: Stream) -> None:
    """Two heartbeats in a row: the stream looked after the first and found no event."""
    beats = 0
    while beats < 2:
        frame = await stream.frame()
        assert "event" not in frame, frame
        beats += frame.get("comment") == "keep-alive"


async def test_an_insurer_node_streams_exactly_the_one_claim_granted_to_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medvault")
    authority = nacl.signing.SigningKey(seed("events authority"))
    async with controlled(tmp_path, authority=authority) as net:
        insurer, stranger = net.cluster.nodes[2], net.cluster.nodes[3]
        app, headers = served(insurer, tmp_path / "insurer-http")
        other, other_headers = served(stranger, tmp_path / "stranger-http")
        alice, _ = new_person(tmp_path, "alice")
        record_id, _ = await put_for(net, tmp_path, alice, "scan.pdf")
        await net.ok(0, "grant", record_id, insurer.public_key.hex())  # to the node's key
        await wallet_knows(net, 1, alice, record_id)
        with trio.fail_after(WAIT):
            async with open_stream(app, "/v1/events", headers) as stream, \
                    open_stream(other, "/v1/events", other_headers) as nothing:  # fmt: skip
                assert stream.status == 200 and nothing.status == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                attested = await net.ok(1, "wallet", "attest", record_id, "--as", str(alice))
                frame = await stream.claim()
                while attested["entry"] not in {
                    e.hash.hex() for e in stranger.ledger.book.entries()
                }:
                    await stranger.ledger.changed()
                await nothing_more(nothing)  # the stranger's node holds no grant
                await nothing_more(stream)  # and the insurer's gets it once
        assert frame["event"] == "claim"
        verified = claims.decode(frame["data"].encode(), authority=bytes(authority.verify_key))
        assert verified.record_id.hex() == record_id
        assert verified.patient_key.hex() == attested["grant_key"]
        assert verified.site == "node-0"  # the owner's certificate, as the insurer's node met it
        ctx = context(app)
        assert ctx.streams_of == {} and ctx.event_streams.borrowed_tokens == 0

        with trio.fail_after(WAIT):
            resumed = {**headers, "Last-Event-ID": frame["id"]}
            async with open_stream(app, "/v1/events", resumed) as again:
                await nothing_more(again)  # nothing after the cursor: no repeat
            async with open_stream(app, f"/v1/events?after={frame['id']}", headers) as again:
                await nothing_more(again)
            # From the start, or with a cursor of another run (a restart), it comes again.
            async with open_stream(app, "/v1/events?after=0a0a0a0a-1", headers) as again:
                assert (await again.claim())["data"] == frame["data"]
            async with open_stream(app, "/v1/events?fhir=true", headers) as fhir:
                shown = await fhir.claim()
        assert '"resourceType":"Claim"' in shown["data"] and shown["id"] == frame["id"]
        assert attested["grant_key"] in shown["data"]
    # Every event sent is logged, naming the token (never its secret): three sends here
    # (the first stream, the replay from another epoch, the FHIR one).
    sent = [
        fields
        for r in caplog.records
        if r.getMessage() == "http record access"
        and (fields := getattr(r, "fields", {}))["action"] == "claim event"
    ]
    assert len(sent) == 3
    assert {(f["token"], f["record"][:8], f["certified"]) for f in sent} == {
        ("insurer-claims", record_id[:8], True)
    }
    assert all(f["event"] == verified.hash.hex()[:16] for f in sent)


async def test_tokens_cursors_and_the_bound_on_streams(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=3, served=1) as api:
        app = api.clients[0]._transport.app  # type: ignore[attr-defined]
        assert isinstance(app, Starlette)
        ctx = context(app)
        ctx.event_streams = trio.CapacityLimiter(3)
        ctx.streams_per_token = 2
        mine = api.token(0, "mine", Scope.READ)
        theirs = api.token(0, "theirs", Scope.READ)
        with trio.fail_after(WAIT):
            async with open_stream(app, "/v1/events") as refused:
                assert refused.status == 401
            for bad in ("x", "zz-", "0a0a-b", f"{'a' * 50}-1", "?fhir=maybe"):
                url = "/v1/events" + (bad if bad.startswith("?") else f"?after={bad}")
                async with open_stream(app, url, mine) as refused:
                    assert refused.status == 400, bad
            async with open_stream(app, "/v1/events", mine) as first:
                epoch = ctx.claim_log.epoch if ctx.claim_log else ""
                async with open_stream(app, f"/v1/events?after={epoch}-5", mine) as past:
                    assert past.status == 400 and "past the last" in str(past.error())
                async with open_stream(app, "/v1/events", mine) as second:
                    async with open_stream(app, "/v1/events", mine) as third:
                        assert third.status == 429  # per token
                        assert "2 event streams open" in third.error()["error"]["message"]
                    async with open_stream(app, "/v1/events", theirs) as other:
                        assert other.status == 200
                        async with open_stream(app, "/v1/events", theirs) as fourth:
                            assert fourth.status == 429  # in all
                            assert "too many" in fourth.error()["error"]["message"]
                    assert first.status == second.status == 200
            # Every slot came back when the streams ended.
            assert ctx.streams_of == {} and ctx.event_streams.borrowed_tokens == 0
            async with open_stream(app, "/v1/events", theirs) as again:
                assert again.status == 200
