"""What the FHIR API refuses, each with a 400 (413, 415) OperationOutcome that names the
problem, storing nothing; and what a member with a write token gains by a flood: a
bounded refusal, fast."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.config.http import HttpConfig
from node.http.fhir import systems
from node.http.fhir.submission import MAX_ENTRIES
from node.http.records_io import bytes_segments
from node.http.tokens import Scope
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import knows_grant
from tests.node.http.fhir_bundles import (
    FHIR,
    binary_entry,
    grantee,
    new_address,
    provide_bundle,
    small_pdf,
)
from tests.node.http.harness import api_cluster

PDF = small_pdf(1000)
Bundle = dict[str, Any]


def doc(bundle: Bundle) -> dict[str, Any]:
    return next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    )


def binary(bundle: Bundle) -> dict[str, Any]:
    return next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary")


def not_transaction(b: Bundle) -> None:
    b["type"] = "document"


def no_binary(b: Bundle) -> None:
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Binary"]


def bad_base64(b: Bundle) -> None:
    binary(b)["resource"]["data"] = "!!!!"


def hash_mismatch(b: Bundle) -> None:
    doc(b)["content"][0]["attachment"]["hash"] = "qvTGHdzF6KLavt4PO0gs2a6pQ00="


def size_mismatch(b: Bundle) -> None:
    doc(b)["content"][0]["attachment"]["size"] = 7


def type_mismatch(b: Bundle) -> None:
    doc(b)["content"][0]["attachment"]["contentType"] = "text/plain"


def wrong_patient_system(b: Bundle) -> None:
    doc(b)["subject"]["identifier"]["system"] = "urn:oid:1.2.36.146.595.217.0.1"


def patient_not_an_address(b: Bundle) -> None:
    doc(b)["subject"]["identifier"]["value"] = "ab" * 32


def no_subject(b: Bundle) -> None:
    del doc(b)["subject"]


def two_documents_one_binary(b: Bundle) -> None:
    twin = copy.deepcopy(next(e for e in b["entry"] if e["resource"] is doc(b)))
    twin["fullUrl"] = "urn:uuid:docref-2"
    b["entry"].append(twin)


def stray_binary(b: Bundle) -> None:
    b["entry"].append(binary_entry(b"x", url="urn:uuid:binary-2"))


def not_fhir(b: Bundle) -> None:
    doc(b)["content"][0]["attachment"]["size"] = "big"


def unknown_element(b: Bundle) -> None:
    doc(b)["favouriteColour"] = "blue"


def foreign_resource(b: Bundle) -> None:
    b["entry"].append({"resource": {"resourceType": "Observation"}, "request": {"method": "POST"}})


def junk_grantee(b: Bundle) -> None:
    doc(b)["extension"] = [grantee(systems.NODE_KEY, "zz" * 32)]


def grantee_of_wrong_size(b: Bundle) -> None:
    doc(b)["extension"] = [grantee(systems.NODE_KEY, "ab" * 33)]


def grantee_without_identifier(b: Bundle) -> None:
    doc(b)["extension"] = [{"url": systems.GRANTEE_EXTENSION, "valueString": "node B"}]


def grantee_of_unknown_system(b: Bundle) -> None:
    doc(b)["extension"] = [grantee("urn:example:npi", "ab" * 32)]


def grantee_not_a_point(b: Bundle) -> None:
    doc(b)["extension"] = [grantee(systems.PERSON_KEY, "ff" * 32)]


def inline_data(b: Bundle) -> None:
    doc(b)["content"][0]["attachment"]["data"] = "aGVsbG8="


def update_not_create(b: Bundle) -> None:
    binary(b)["request"]["method"] = "PUT"


CASES: list[tuple[Callable[[Bundle], None], str]] = [
    (not_transaction, "Bundle.type must be 'transaction'"),
    (no_binary, "must name a Binary entry"),
    (bad_base64, "not valid base64"),
    (hash_mismatch, "not the SHA-1"),
    (size_mismatch, "attachment.size is 7"),
    (type_mismatch, "is not the Binary's"),
    (wrong_patient_system, systems.PATIENT_ADDRESS),
    (patient_not_an_address, "132 hex digits"),
    (no_subject, "subject is required"),
    (two_documents_one_binary, "is used by entry"),
    (stray_binary, "belongs to no DocumentReference"),
    (not_fhir, "content.0.attachment.size"),
    (unknown_element, "favouriteColour"),
    (foreign_resource, "'Observation' is not accepted"),
    (junk_grantee, "64 hex digits"),
    (grantee_of_wrong_size, "64 hex digits"),
    (grantee_without_identifier, "needs a valueIdentifier"),
    (grantee_of_unknown_system, "needs a valueIdentifier"),
    (grantee_not_a_point, "not a usable key"),
    (inline_data, "goes in a Binary"),
    (update_not_create, "only POST"),
]


async def test_malformed_bundles_are_400s_naming_the_problem(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        for spoil, named in CASES:
            bundle = provide_bundle(PDF, new_address())
            spoil(bundle)
            answer = await client.post("/fhir", json=bundle, headers=writer | FHIR)
            assert answer.status_code == 400, (spoil.__name__, answer.text)
            assert answer.headers["content-type"].startswith("application/fhir+json")
            outcome = answer.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert named in outcome["issue"][0]["diagnostics"], (spoil.__name__, outcome)
        for raw, named in [
            (b"{not json", "not valid JSON"),
            (b"", "empty"),
            (b"[1, 2]", "expected a FHIR Bundle"),
            (b'{"resourceType": "Patient"}', "expected a FHIR Bundle"),
        ]:
            answer = await client.post("/fhir", content=raw, headers=writer | FHIR)
            assert answer.status_code == 400
            assert named in answer.json()["issue"][0]["diagnostics"]
        xml = await client.post(
            "/fhir", content=b"<Bundle/>", headers=writer | {"Content-Type": "application/xml"}
        )
        assert xml.status_code == 415
        # Nothing was stored by any of them.
        assert api.nodes[0].ledger.state().records == {}


async def test_body_over_the_limit_is_413_without_reading_it_all(tmp_path: Path) -> None:
    config = HttpConfig(listen="127.0.0.1:0", max_bundle_bytes=64 * 1024)
    async with api_cluster(tmp_path, served=1, config=config) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        big = provide_bundle(small_pdf(100_000), new_address())
        answer = await client.post("/fhir", json=big, headers=writer)
        assert answer.status_code == 413
        assert "max_bundle_bytes" in answer.json()["issue"][0]["diagnostics"]

        sent = 0

        async def lying() -> Any:  # no Content-Length: the running count must stop it
            nonlocal sent
            for _ in range(1000):
                sent += 1
                yield b" " * 16384

        streamed = await client.post("/fhir", content=lying(), headers=writer)
        assert streamed.status_code == 413
        assert sent < 10  # refused after ~64 KiB of the 16 MiB offered
        small = provide_bundle(small_pdf(1000), new_address())
        assert (await client.post("/fhir", json=small, headers=writer)).status_code == 200


async def test_floods_are_refused_quickly(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, count=1, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        many = provide_bundle(PDF, new_address())
        many["entry"] = many["entry"] * 5000  # 15,000 entries
        started = time.monotonic()
        answer = await client.post("/fhir", json=many, headers=writer)
        assert answer.status_code == 400
        assert f"at most {MAX_ENTRIES}" in answer.json()["issue"][0]["diagnostics"]

        deep = b'{"resourceType": "Bundle", "type": "transaction", "entry": ' + b"[" * 100_000
        deep += b"]" * 100_000 + b"}"
        nested = await client.post("/fhir", content=deep, headers=writer)
        assert nested.status_code == 400
        assert "nests deeper" in nested.json()["issue"][0]["diagnostics"]
        extension: dict[str, Any] = {"url": "urn:x"}
        for _ in range(200):  # valid FHIR shape, nested 400 levels deep
            extension = {"url": "urn:x", "extension": [extension]}
        bundle = provide_bundle(PDF, new_address())
        doc(bundle)["extension"] = [extension]
        deep_fhir = await client.post("/fhir", content=json.dumps(bundle), headers=writer)
        assert deep_fhir.status_code == 400
        assert "nests deeper" in deep_fhir.json()["issue"][0]["diagnostics"]
        assert time.monotonic() - started < 30  # generous: a 2-core machine, busy

        reader = api.token(0, "viewer", Scope.READ)
        flood = "&".join(f"type=c{i}" for i in range(100))
        refused = await client.get(f"/fhir/DocumentReference?{flood}", headers=reader)
        assert refused.status_code == 400
        assert "search parameters, at most" in refused.json()["issue"][0]["diagnostics"]
        values = ",".join(f"c{i}" for i in range(1000))
        refused = await client.get(f"/fhir/DocumentReference?type={values}", headers=reader)
        assert refused.status_code == 400
        assert "search values" in refused.json()["issue"][0]["diagnostics"]
        long = await client.get(f"/fhir/DocumentReference?type={'c' * 20_000}", headers=reader)
        assert long.status_code == 400
        assert "over 8192 characters" in long.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("patient=abc", "132 hex digits"),
        ("patient.identifier=urn:oid:1.2|123", "the system here is"),
        ("date=yesterday", "is not [eq|ne|gt|lt|ge|le]"),
        ("date=sa2024", "is not [eq|ne|gt|lt|ge|le]"),
        ("status=final", "status: one of"),
        ("_id=12", "_id: a record id"),
        ("_count=-1", "_count must be a whole number"),
        ("author=x", "unsupported search parameter 'author'"),
        ("type:not=x", "unsupported search modifier"),
    ],
)
async def test_malformed_search_parameters_are_400s(tmp_path: Path, query: str, named: str) -> None:
    async with api_cluster(tmp_path, count=1, served=1) as api:
        reader = api.token(0, "viewer", Scope.READ)
        answer = await api.clients[0].get(f"/fhir/DocumentReference?{query}", headers=reader)
        assert answer.status_code == 400
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert named in answer.json()["issue"][0]["diagnostics"]


async def test_a_junk_record_granted_to_the_node_does_not_break_search(tmp_path: Path) -> None:
    """Any member may put a record with junk FHIR metadata and grant it to this node: the
    search still answers, showing that record in its minimal form."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member = api.nodes[0], api.nodes[2]
        patient = new_address()
        junk = RecordMetadata(
            content_type="application/pdf",
            filename="x.pdf",
            patient_ref=patient,
            extra={systems.DOCUMENT_KEY: '{"resourceType": "DocumentReference", "status": 5'},
        )
        put = await member.records.put(
            bytes_segments(b"junk", 65536), metadata=junk, expiring=[a.public_key]
        )
        await knows_grant(a, put.record_id, a.public_key)
        reader = api.token(0, "viewer", Scope.READ)
        found = await api.clients[0].get(
            "/fhir/DocumentReference", params={"patient": patient}, headers=reader
        )
        assert found.status_code == 200
        (entry,) = found.json()["entry"]
        assert entry["resource"]["id"] == put.record_id.hex()
        assert entry["resource"]["content"][0]["attachment"]["title"] == "x.pdf"
