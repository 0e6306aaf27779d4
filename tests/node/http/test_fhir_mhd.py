"""The FHIR API (IHE MHD) on whole nodes: ITI-65 publish, ITI-67 search, ITI-68 retrieve,
the grant deciding which node finds what, and the CapabilityStatement."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
import trio
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from node.http.fhir import systems
from node.http.tokens import Scope
from tests.node.cluster import knows_grant
from tests.node.http.fhir_bundles import (
    FHIR,
    LAB,
    grantee,
    new_address,
    provide_bundle,
    record_ids,
    small_pdf,
)
from tests.node.http.harness import api_cluster


async def test_metadata_is_a_public_capability_statement(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=1, served=1) as api:
        answer = await api.clients[0].get("/fhir/metadata")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/fhir+json")
        statement = answer.json()
        CapabilityStatement.model_validate(statement)  # valid R4 (fhir.resources)
        assert statement["fhirVersion"] == "4.0.1"
        rest = statement["rest"][0]
        assert [i["code"] for i in rest["interaction"]] == ["transaction"]
        kinds = {r["type"]: r for r in rest["resource"]}
        reference = kinds["DocumentReference"]
        assert {i["code"] for i in reference["interaction"]} == {"read", "search-type"}
        names = {p["name"] for p in reference["searchParam"]}
        assert {"patient", "patient.identifier", "date", "type"} <= names
        assert [i["code"] for i in kinds["Binary"]["interaction"]] == ["read"]


async def test_publish_search_and_retrieve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medvault")
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        reader = api.token(0, "viewer-A", Scope.READ)
        patient, other = new_address(), new_address()
        pdf = small_pdf(150_000)  # three 64 KiB segments
        posted = await client.post(
            "/fhir", json=provide_bundle(pdf, patient), headers=writer | FHIR
        )
        assert posted.status_code == 200, posted.text
        response = posted.json()
        Bundle.model_validate(response)
        assert response["type"] == "transaction-response"
        statuses = [e["response"]["status"] for e in response["entry"]]
        assert statuses == ["200 OK", "201 Created", "201 Created"]  # List, DocRef, Binary
        (record,) = record_ids(response)
        assert response["entry"][2]["response"]["location"] == f"Binary/{record}"
        lab = small_pdf(500)
        second = await client.post(
            "/fhir/",
            json=provide_bundle(lab, other, date="2023-06-01T08:00:00Z", type_code=LAB),
            headers=writer | FHIR,
        )
        assert second.status_code == 200, second.text
        (lab_record,) = record_ids(second.json())

        async def search(**params: str) -> list[str]:
            found = await client.get("/fhir/DocumentReference", params=params, headers=reader)
            assert found.status_code == 200, found.text
            bundle = found.json()
            Bundle.model_validate(bundle)
            assert bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"])
            return [e["resource"]["id"] for e in bundle["entry"]]

        identifier = f"{systems.PATIENT_ADDRESS}|{patient}"
        assert await search(**{"patient.identifier": identifier}) == [record]
        assert await search(patient=f"Patient/{other}") == [lab_record]
        assert await search(patient=new_address()) == []  # unknown patient: empty, not an error
        assert await search(date="ge2024-03-01") == [record]
        assert sorted(await search(date="ge2023")) == sorted([record, lab_record])
        assert await search(date="2024-03-15") == [record]
        assert await search(date="lt2024-01-01") == [lab_record]
        by_range = await client.get(
            "/fhir/DocumentReference?date=ge2023-01-01&date=le2023-12-31", headers=reader
        )
        assert [e["resource"]["id"] for e in by_range.json()["entry"]] == [lab_record]
        assert await search(type=f"{LAB[0]}|{LAB[1]}") == [lab_record]
        assert await search(type="18842-5") == [record]
        assert await search(type="http://snomed.info/sct|18842-5") == []
        assert await search(status="current", _id=record) == [record]
        assert await search(creation="2024-03") == [record]

        found = await client.get(
            "/fhir/DocumentReference", params={"patient": patient}, headers=reader
        )
        reference = found.json()["entry"][0]["resource"]
        attachment = reference["content"][0]["attachment"]
        assert attachment["url"] == f"Binary/{record}"
        assert attachment["size"] == len(pdf) and attachment["contentType"] == "application/pdf"
        assert reference["description"] == "Discharge summary, cardiology"
        assert reference["masterIdentifier"]["value"] == f"urn:oid:1.2.3.{len(pdf)}"
        assert reference["subject"]["identifier"]["value"] == patient
        read = await client.get(f"/fhir/DocumentReference/{record}", headers=reader)
        assert read.json() == reference

        retrieved = await client.get(f"/fhir/{attachment['url']}", headers=reader)
        assert retrieved.status_code == 200
        assert retrieved.content == pdf
        assert retrieved.headers["content-type"] == "application/pdf"
        ranged = await client.get(
            f"/fhir/Binary/{record}", headers=reader | {"Range": "bytes=65530-65545"}
        )
        assert ranged.status_code == 206 and ranged.content == pdf[65530:65546]
        resource = await client.get(
            f"/fhir/Binary/{lab_record}", headers=reader | {"Accept": "application/fhir+json"}
        )
        assert resource.json()["resourceType"] == "Binary"
        assert base64.b64decode(resource.json()["data"]) == lab

        # Nothing descriptive reached the ledger: not the title, not her address.
        state = api.nodes[0].ledger.state()
        grants = state.grants_of(bytes.fromhex(record))
        for raw in [state.records[bytes.fromhex(record)].entry, *(g.entry for g in grants)]:
            assert b"cardiology" not in raw and bytes.fromhex(patient) not in raw
    accessed = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "http record access"
    ]
    seen = {(f["token"], f["action"], f["record"][:8]) for f in accessed}
    assert ("EHR-A", "store", record[:8]) in seen
    assert ("viewer-A", "fhir search", record[:8]) in seen
    assert ("viewer-A", "fhir read", record[:8]) in seen
    assert ("viewer-A", "fhir retrieve", record[:8]) in seen


async def test_a_granted_node_finds_and_reads_what_others_cannot(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, served=3) as api:
        a, b, c = api.clients
        patient = new_address()
        pdf = small_pdf(3000)
        b_key = api.nodes[1].public_key.hex()
        bundle = provide_bundle(pdf, patient, grantees=[grantee(systems.NODE_KEY, b_key)])
        posted = await a.post("/fhir", json=bundle, headers=api.token(0, "EHR-A", Scope.WRITE))
        assert posted.status_code == 200, posted.text
        (record,) = record_ids(posted.json())
        record_id = bytes.fromhex(record)
        with trio.fail_after(60):
            await knows_grant(api.nodes[1], record_id, api.nodes[1].public_key)
            while record_id not in api.nodes[2].ledger.state().records:
                await api.nodes[2].ledger.changed()

        params = {"patient.identifier": f"{systems.PATIENT_ADDRESS}|{patient}"}
        at_b = api.token(1, "EHR-B", Scope.READ)
        found = await b.get("/fhir/DocumentReference", params=params, headers=at_b)
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [record]
        got = await b.get(f"/fhir/Binary/{record}", headers=at_b)
        assert got.status_code == 200 and got.content == pdf

        at_c = api.token(2, "EHR-C", Scope.READ)
        nothing = await c.get("/fhir/DocumentReference", params=params, headers=at_c)
        assert nothing.status_code == 200 and nothing.json()["total"] == 0
        refused = await c.get(f"/fhir/Binary/{record}", headers=at_c)
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert refused.json()["issue"][0]["code"] == "forbidden"
        assert (await c.get(f"/fhir/DocumentReference/{record}", headers=at_c)).status_code == 403
        unknown = await c.get(f"/fhir/Binary/{'cd' * 32}", headers=at_c)
        assert unknown.status_code == 404 and unknown.json()["issue"][0]["code"] == "not-found"


async def test_tokens_and_scopes(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=1, served=1) as api:
        client = api.clients[0]
        bundle = provide_bundle(small_pdf(100), new_address())
        anonymous = await client.post("/fhir", json=bundle, headers=FHIR)
        assert anonymous.status_code == 401
        assert anonymous.json()["resourceType"] == "OperationOutcome"
        assert anonymous.json()["issue"][0]["code"] == "login"
        assert (await client.get("/fhir/DocumentReference")).status_code == 401
        assert (await client.get(f"/fhir/Binary/{'ab' * 32}")).status_code == 401
        reader = api.token(0, "viewer", Scope.READ)
        refused = await client.post("/fhir", json=bundle, headers=reader | FHIR)
        assert refused.status_code == 403
        assert "scope read" in refused.json()["issue"][0]["diagnostics"]
        # Refused before its body was read: the connection closes, and the answer says so.
        assert refused.headers["connection"] == "close"


async def test_too_few_holders_is_503(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=6, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        posted = await client.post(
            "/fhir", json=provide_bundle(small_pdf(100), new_address()), headers=writer
        )
        (record,) = record_ids(posted.json())
        for node in api.nodes[1:]:
            api.cluster.crash(node)
        # Node A holds one shard index at most (placement spreads them): fewer than k = 3.
        gone = await client.get(f"/fhir/Binary/{record}", headers=writer)
        assert gone.status_code == 503, gone.text
        assert gone.json()["issue"][0]["code"] == "transient"


def test_bundle_json_roundtrip_is_plain_json() -> None:
    """The helper's Bundle is what an EHR would send: plain JSON."""
    bundle = provide_bundle(small_pdf(10), new_address())
    assert json.loads(json.dumps(bundle)) == bundle
