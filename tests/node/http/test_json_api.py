"""The JSON API on a whole node: tokens and scopes, a streamed put and get, byte ranges,
errors as statuses, and an OpenAPI description that matches the routes."""

from __future__ import annotations

import os
from pathlib import Path

from node.http.errors import from_node_error
from node.http.tokens import Scope
from node.records.errors import (
    NO_MANIFEST,
    TOO_FEW_HOLDERS,
    NetworkTooSmall,
    NoGrant,
    RecordError,
    UnknownRecord,
)
from node.records.fetch import TooFewShards
from tests.node.http.harness import api_cluster


async def test_put_and_get_through_the_json_api(tmp_path: Path) -> None:
    async with api_cluster(tmp_path) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        data = os.urandom(300_000)
        put = await client.post(
            "/v1/records",
            content=data,
            params={"filename": "scan.pdf"},
            headers=writer | {"Content-Type": "application/pdf"},
        )
        assert put.status_code == 201, put.text
        record_id = put.json()["record_id"]
        assert put.json()["size"] == len(data) and put.json()["holders"] == 5

        got = await client.get(f"/v1/records/{record_id}", headers=writer)
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["content-type"] == "application/pdf"
        assert got.headers["content-length"] == str(len(data))

        # One byte range, across a segment boundary (segments are 64 KiB here).
        ranged = await client.get(
            f"/v1/records/{record_id}", headers=writer | {"Range": "bytes=65000-140000"}
        )
        assert ranged.status_code == 206
        assert ranged.content == data[65000:140001]
        assert ranged.headers["content-range"] == f"bytes 65000-140000/{len(data)}"
        suffix = await client.get(
            f"/v1/records/{record_id}", headers=writer | {"Range": "bytes=-10"}
        )
        assert suffix.content == data[-10:]
        past = await client.get(
            f"/v1/records/{record_id}", headers=writer | {"Range": f"bytes={len(data)}-"}
        )
        assert past.status_code == 416

        listed = await client.get("/v1/records", headers=writer)
        assert record_id in [r["record_id"] for r in listed.json()["records"]]


async def test_tokens_and_scopes_are_enforced(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        reader = api.token(0, "viewer", Scope.READ)
        none = await client.get("/v1/status")
        assert none.status_code == 401
        assert none.headers["www-authenticate"].startswith("Bearer")
        forged = await client.get("/v1/status", headers={"Authorization": "Bearer mvt_00_x"})
        assert forged.status_code == 401
        assert (await client.get("/v1/status", headers=reader)).status_code == 200

        refused = await client.post("/v1/records", content=b"x", headers=reader)
        assert refused.status_code == 403
        assert "scope read" in refused.json()["error"]["message"]
        assert (await client.get("/v1/check", headers=reader)).status_code == 403

        # A revoked token is refused by the next request (the store rereads its file).
        api.tokens[0].revoke("viewer")
        assert (await client.get("/v1/status", headers=reader)).status_code == 401


async def test_errors_map_to_statuses(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        admin = api.token(0, "ops", Scope.ADMIN)
        unknown = await client.get(f"/v1/records/{'ab' * 32}", headers=admin)
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not-found"
        malformed = await client.get("/v1/records/zz", headers=admin)
        assert malformed.status_code == 400
        assert (await client.get("/v1/nothing", headers=admin)).status_code == 404


async def test_openapi_describes_every_route(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=1, served=1) as api:
        client = api.clients[0]
        described = (await client.get("/v1/openapi.json")).json()
        assert described["openapi"].startswith("3.")
        app = client._transport.app  # type: ignore[attr-defined]
        routed: dict[str, set[str]] = {}
        for route in app.routes:
            if route.path.startswith("/v1/"):
                routed.setdefault(route.path, set()).update(m.lower() for m in route.methods)
        documented = {
            path: {m for m in item if m in ("get", "post", "put", "delete")}
            for path, item in described["paths"].items()
        }
        routed = {p: m - {"head"} for p, m in routed.items()}
        assert routed == documented


def test_node_errors_map_to_one_status_each() -> None:
    """The same cause gets the same status on every route (docs/http.md's table)."""
    cases = [
        (UnknownRecord("x"), 404),
        (NoGrant("x"), 403),
        (NetworkTooSmall("x"), 503),
        (TooFewShards("x"), 503),
        (RecordError("no holder served its manifest", reason=NO_MANIFEST), 503),
        (RecordError("holders fell short", reason=TOO_FEW_HOLDERS), 503),
        (RecordError("a rule"), 409),
        (ValueError("a bug"), 500),
    ]
    for error, status in cases:
        assert from_node_error(error).status == status, error
