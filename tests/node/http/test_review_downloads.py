"""Review of retrieval (issue 15): a record's content type and file name are whatever its
owner stored (any member, or any write token through /v1/records), and its bytes are
served from the node's origin, where a browser sends the status page's Basic credentials.
A stored HTML page must not run there, and a stored content type must not write headers."""

from __future__ import annotations

from pathlib import Path

import httpx

from node.http.records_io import bytes_segments
from node.http.tokens import Scope
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import knows_grant
from tests.node.http.harness import api_cluster

PAGE = b"<html><script>fetch('/v1/records').then(r => r.text()).then(alert)</script></html>"


def served_inert(answer: httpx.Response) -> None:
    """A browser downloads it and would neither sniff nor run it."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"].startswith("attachment")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    assert "default-src 'none'" in answer.headers["content-security-policy"]


async def test_stored_html_is_never_served_as_a_page(tmp_path: Path) -> None:
    """Before: a record stored as text/html without a file name came back inline as
    text/html, a script at the node's origin (stored XSS by a member or a write token)."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member = api.nodes[0], api.nodes[2]
        client = api.clients[0]
        reader = api.token(0, "viewer", Scope.READ)
        writer = api.token(0, "ehr", Scope.WRITE)
        put = await member.records.put(
            bytes_segments(PAGE, 65536),
            metadata=RecordMetadata(content_type="text/html"),
            expiring=[a.public_key],
        )
        await knows_grant(a, put.record_id, a.public_key)
        uploaded = await client.post(
            "/v1/records", content=PAGE, headers=writer | {"Content-Type": "text/html"}
        )
        assert uploaded.status_code == 201
        for record in (put.record_id.hex(), uploaded.json()["record_id"]):
            for path in (f"/v1/records/{record}", f"/fhir/Binary/{record}"):
                answer = await client.get(path, headers=reader)
                served_inert(answer)
                assert answer.content == PAGE
                assert answer.headers["content-disposition"] == "attachment"
            ranged = await client.get(
                f"/v1/records/{record}", headers=reader | {"Range": "bytes=0-5"}
            )
            assert ranged.status_code == 206
            assert ranged.headers["content-disposition"] == "attachment"


async def test_a_stored_content_type_cannot_write_headers(tmp_path: Path) -> None:
    """Before: the owner's content type went into the Content-Type header as stored, line
    breaks and all: at best the server refuses the response, at worst it sends the owner's
    headers (a cookie for the node's origin)."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member = api.nodes[0], api.nodes[2]
        crafted = RecordMetadata(
            content_type="text/plain\r\nSet-Cookie: session=attacker", filename='a"\r\nb.pdf'
        )
        put = await member.records.put(
            bytes_segments(b"data", 65536), metadata=crafted, expiring=[a.public_key]
        )
        await knows_grant(a, put.record_id, a.public_key)
        reader = api.token(0, "viewer", Scope.READ)
        for path in (f"/v1/records/{put.record_id.hex()}", f"/fhir/Binary/{put.record_id.hex()}"):
            answer = await api.clients[0].get(path, headers=reader)
            served_inert(answer)
            assert answer.headers["content-type"] == "application/octet-stream"
            assert "set-cookie" not in answer.headers
            assert answer.headers["content-disposition"] == 'attachment; filename="a___b.pdf"'
            assert answer.content == b"data"
