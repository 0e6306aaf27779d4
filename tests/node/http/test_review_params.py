"""Review of the JSON API's and the search's parameters (issue 15): what a token holder
sends that is well-formed but odd."""

from __future__ import annotations

from pathlib import Path

from node.http.tokens import Scope
from tests.node.http.fhir_bundles import new_address
from tests.node.http.harness import api_cluster


async def test_a_patient_spelled_oddly_on_upload_is_found_by_her_search(
    tmp_path: Path,
) -> None:
    """bytes.fromhex accepts upper case and spaces: before, /v1/records kept the patient as
    spelled, so her search (lower-case hex) never found the record put for her."""
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "ehr", Scope.WRITE)
        reader = api.token(0, "viewer", Scope.READ)
        patient = new_address()
        spelled = " ".join(patient[i : i + 2] for i in range(0, len(patient), 2)).upper()
        put = await client.post(
            "/v1/records", params={"patient": spelled}, content=b"lab", headers=writer
        )
        assert put.status_code == 201, put.text
        found = await client.get(
            "/fhir/DocumentReference", params={"patient": patient}, headers=reader
        )
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [put.json()["record_id"]]


async def test_an_expiry_out_of_range_is_refused_before_the_upload(tmp_path: Path) -> None:
    """Before: expires_at=2**64 passed the HTTP check and failed inside the put with an
    OverflowError (a 500 "internal error"), not a 400 naming the parameter."""
    async with api_cluster(tmp_path, served=1) as api:
        writer = api.token(0, "ehr", Scope.WRITE)
        grantee = api.nodes[1].public_key.hex()
        for value in (str(2**64), "-5"):
            answer = await api.clients[0].post(
                "/v1/records",
                params={"grant": grantee, "expires_at": value},
                content=b"lab",
                headers=writer,
            )
            assert answer.status_code == 400, (value, answer.text)
            assert "expires_at" in answer.json()["error"]["message"]
        assert api.nodes[0].ledger.state().records == {}


async def test_count_zero_gives_the_total_without_a_next_link_to_itself(
    tmp_path: Path,
) -> None:
    """Before: _count=0 answered a `next` link with the same _offset and _count=0, which
    a client following next links followed forever."""
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "ehr", Scope.WRITE)
        reader = api.token(0, "viewer", Scope.READ)
        for _ in range(2):
            assert (await client.post("/v1/records", content=b"x", headers=writer)).is_success
        answer = await client.get("/fhir/DocumentReference", params={"_count": "0"}, headers=reader)
        bundle = answer.json()
        assert bundle["total"] == 2
        assert bundle["entry"] == []
        assert [link["relation"] for link in bundle["link"]] == ["self"]
