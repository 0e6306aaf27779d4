"""Issue 15's FHIR test on real daemons: hospital A's EHR posts a PDF with ITI-65 naming a
patient (her address) and hospital B's node as a grantee; at B a read token finds it with
ITI-67 and retrieves it byte-identical with ITI-68. Tokens come from the CLI; every
request goes over HTTP to 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.http.fhir import systems
from node.sim.localnet import Daemon, Network, configure, free_ports, medvault
from tests.node.http.fhir_bundles import FHIR, grantee, provide_bundle, record_ids, small_pdf

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 3, "n": 5, "happy": 4},
    "gossip": {"interval": 0.5},
}


def token(net: Network, index: int, name: str, scope: str) -> dict[str, str]:
    made = net.cli(index, "http", "token", "new", "--name", name, "--scope", scope)
    return {"Authorization": f"Bearer {made['token']}"}


def counter(client: httpx.Client, url: str, headers: dict[str, str], name: str) -> float:
    """One unlabelled sample of the node's /metrics, read with prometheus_client's parser."""
    answer = client.get(f"{url}/metrics", headers=headers)
    assert answer.status_code == 200
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} is not in /metrics")


def patient_address(root: Path) -> str:
    key = root / "patient.key"
    medvault("keys", "new", "-o", str(key))
    return medvault("keys", "address", str(key)).stdout.strip()


def test_a_pdf_posted_at_a_is_found_and_retrieved_at_b(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", 5, SETTINGS)
    daemons.extend(net.nodes)
    ports = free_ports(2)
    for index, port in enumerate(ports):
        configure(
            net.nodes[index].data_dir / "config.toml", {"http": {"listen": f"127.0.0.1:{port}"}}
        )
    net.start_all()
    for index in range(2):
        net.nodes[index].wait_for("http listening")
    a_url, b_url = (f"http://127.0.0.1:{port}" for port in ports)

    patient = patient_address(tmp_path)
    assert len(bytes.fromhex(patient)) == 66
    ehr_a = token(net, 0, "EHR-A", "write")
    viewer_a = token(net, 0, "viewer-A", "read")
    ehr_b = token(net, 1, "EHR-B", "read")
    pdf = small_pdf(200_000)
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    bundle = provide_bundle(pdf, patient, grantees=[grantee(systems.NODE_KEY, net.keys[1])])

    with httpx.Client(timeout=120) as client:
        assert client.get(f"{a_url}/fhir/metadata").json()["fhirVersion"] == "4.0.1"
        anonymous = client.post(f"{a_url}/fhir", json=bundle, headers=FHIR)
        assert anonymous.status_code == 401
        assert anonymous.json()["resourceType"] == "OperationOutcome"
        read_only = client.post(f"{a_url}/fhir", json=bundle, headers=viewer_a | FHIR)
        assert read_only.status_code == 403
        malformed = client.post(
            f"{a_url}/fhir", json={**bundle, "type": "collection"}, headers=ehr_a | FHIR
        )
        assert malformed.status_code == 400
        assert malformed.json()["resourceType"] == "OperationOutcome"
        assert "transaction" in malformed.json()["issue"][0]["diagnostics"]

        puts_before = counter(client, a_url, viewer_a, "medvault_puts_total")
        posted = client.post(f"{a_url}/fhir", json=bundle, headers=ehr_a | FHIR)
        assert posted.status_code == 200, posted.text
        assert posted.json()["type"] == "transaction-response"
        (record,) = record_ids(posted.json())
        assert counter(client, a_url, viewer_a, "medvault_puts_total") == puts_before + 1

        # B learns of the record and its grant by gossip: poll B's search (bounded).
        params = {"patient.identifier": f"{systems.PATIENT_ADDRESS}|{patient}"}
        deadline = time.monotonic() + 90
        while True:
            found = client.get(f"{b_url}/fhir/DocumentReference", params=params, headers=ehr_b)
            assert found.status_code == 200, found.text
            if found.json()["total"]:
                break
            assert time.monotonic() < deadline, "B never found the document"
            time.sleep(0.2)  # polling B's state, not waiting for time to pass
        (entry,) = found.json()["entry"]
        attachment = entry["resource"]["content"][0]["attachment"]
        assert attachment == attachment | {"url": f"Binary/{record}", "size": len(pdf)}
        assert attachment["contentType"] == "application/pdf"

        gets_before = counter(client, b_url, ehr_b, "medvault_gets_total")
        retrieved = client.get(f"{b_url}/fhir/{attachment['url']}", headers=ehr_b)
        assert retrieved.status_code == 200
        assert retrieved.headers["content-type"] == "application/pdf"
        assert retrieved.content == pdf
        # A get is counted when its stream ends, just after its last byte went out.
        deadline = time.monotonic() + 30
        while counter(client, b_url, ehr_b, "medvault_gets_total") < gets_before + 1:
            assert time.monotonic() < deadline, "B's get was never counted"
            time.sleep(0.1)  # polling B's state
        assert counter(client, b_url, ehr_b, "medvault_gets_total") == gets_before + 1
        assert counter(client, b_url, ehr_b, "medvault_get_bytes_total") >= len(pdf)

        # A read token at B cannot publish either; without a token, nothing.
        assert client.post(f"{b_url}/fhir", json=bundle, headers=ehr_b).status_code == 403
        assert client.get(f"{b_url}/fhir/Binary/{record}").status_code == 401

    accessed = net.nodes[1].wait_for("http record access", action="fhir retrieve")
    assert accessed["token"] == "EHR-B"
    stored = net.nodes[0].wait_for("http record access", action="store")
    assert stored["token"] == "EHR-A"
    net.stop_all()
