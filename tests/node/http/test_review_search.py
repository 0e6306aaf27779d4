"""Review of ITI-67 (issue 15) as a compromised member: one with the network key and a
valid certificate puts records with crafted encrypted metadata and grants them to an
honest node. Whatever it writes, the honest node's search keeps answering, and keeps
finding the honest records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.assembly import Node
from node.http.fhir import systems
from node.http.records_io import bytes_segments
from node.http.tokens import Scope
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import knows_grant
from tests.node.http.fhir_bundles import new_address
from tests.node.http.harness import api_cluster


def kept(**fields: Any) -> str:
    """A DocumentReference as a member may write it into a record's encrypted metadata."""
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"title": "crafted"}}],
        **fields,
    }
    return json.dumps(resource)


async def granted(member: Node, to: Node, metadata: RecordMetadata, data: bytes = b"x") -> bytes:
    """A record `member` puts with `metadata` and grants to `to`, once `to` knows the grant."""
    put = await member.records.put(
        bytes_segments(data, 65536), metadata=metadata, expiring=[to.public_key]
    )
    await knows_grant(to, put.record_id, to.public_key)
    return put.record_id


async def test_a_date_past_9999_in_a_members_record_does_not_break_search(
    tmp_path: Path,
) -> None:
    """FHIR allows the instant 9999-12-31T23:59:59Z; the range it stands for ends in year
    10000, which Python's datetime cannot hold. One such record granted to the node made
    every search answer 500 (and so did a `date=9999` parameter)."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member = api.nodes[0], api.nodes[2]
        patient = new_address()
        honest = await granted(
            member, a, RecordMetadata(content_type="application/pdf", patient_ref=patient)
        )
        crafted = await granted(
            member,
            a,
            RecordMetadata(
                content_type="application/pdf",
                patient_ref=patient,
                extra={
                    systems.DOCUMENT_KEY: kept(
                        date="9999-12-31T23:59:59Z",
                        content=[{"attachment": {"title": "x", "creation": "9999"}}],
                    )
                },
            ),
        )
        reader = api.token(0, "viewer", Scope.READ)
        client = api.clients[0]
        found = await client.get(
            "/fhir/DocumentReference", params={"patient": patient}, headers=reader
        )
        assert found.status_code == 200, found.text
        ids = {e["resource"]["id"] for e in found.json()["entry"]}
        assert ids == {honest.hex(), crafted.hex()}
        for name, value in [("date", "9999"), ("date", "ge9999-12"), ("creation", "9999")]:
            dated = await client.get(
                "/fhir/DocumentReference", params={name: value}, headers=reader
            )
            assert dated.status_code == 200, (name, value, dated.text)
            assert [e["resource"]["id"] for e in dated.json()["entry"]] == [crafted.hex()]
        one = await client.get(f"/fhir/DocumentReference/{crafted.hex()}", headers=reader)
        assert one.status_code == 200
