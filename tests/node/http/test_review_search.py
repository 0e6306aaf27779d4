"""Review of ITI-67 (issue 15) as a compromised member: one with the network key and a
valid certificate puts records with crafted encrypted metadata and grants them to an
honest node. Whatever it writes, the honest node's search keeps answering, and keeps
finding the honest records."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import httpx
import trio

from node.assembly import Node
from node.http.fhir import systems
from node.http.fhir.catalog import DESCRIBE_AT_ONCE, Catalog
from node.http.fhir.iti67 import CATALOG
from node.http.records_io import bytes_segments
from node.http.tokens import Scope
from node.records.errors import RecordError
from protocol.ledger.entries import Body, GrantBody, RecordBody, derive_record_id
from protocol.ledger.state import RecordInfo
from storage.codec.crypt import seal_key
from storage.codec.manifest import Manifest, RecordMetadata
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


async def junk_grants(member: Node, to: Node, count: int) -> list[bytes]:
    """`count` records that exist only in the ledger (no manifest, no shards anywhere), each
    granted to `to`: what a member floods with for the price of two entries each."""
    bodies: list[Body] = []
    ids = []
    config = member.records.config
    for _ in range(count):
        nonce = os.urandom(16)
        record_id = derive_record_id(member.public_key, nonce)
        ids.append(record_id)
        bodies.append(
            RecordBody(
                record_id, nonce, os.urandom(32), 1024, config.k, config.n, member.public_key
            )
        )
        sealed = seal_key(os.urandom(32), to.public_key, os.urandom(32))
        bodies.append(GrantBody(record_id, to.public_key, sealed, 0))
    await member.ledger.append_all(bodies)
    for record_id in ids:
        await knows_grant(to, record_id, to.public_key)
    return ids


class Stalling:
    """Node `a`'s records service as a Catalog sees it, with the junk records' manifest
    fetches failing: at once (nobody serves them) or never returning (a lying holder that
    lets the call time out). The node's own services keep the real one."""

    def __init__(self, node: Node, junk: set[bytes], *, stall: bool) -> None:
        self.node = node
        self.junk = junk
        self.stall = stall
        self.asked: list[bytes] = []
        self.at_once = self.peak = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.node.records, name)

    async def manifest_of(self, record: RecordInfo) -> Manifest:
        self.asked.append(record.record_id)
        if record.record_id not in self.junk:
            return await self.node.records.manifest_of(record)
        self.at_once += 1
        self.peak = max(self.peak, self.at_once)
        try:
            if self.stall:
                await trio.sleep_forever()
        finally:
            self.at_once -= 1
        raise RecordError("no holder served its manifest")

    def catalog(self, **settings: Any) -> Catalog:
        """A catalog of the node, fetching through this."""
        return Catalog(cast(Node, _NodeView(self.node, self)), **settings)


class _NodeView:
    def __init__(self, node: Node, records: Stalling) -> None:
        self._node = node
        self.records = records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


async def test_junk_grants_are_not_fetched_again_by_every_search(tmp_path: Path) -> None:
    """Before: a record that could not be described was asked for again by every search,
    so a member's flood of junk grants cost every search a manifest fetch per record."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member, other = api.nodes[0], api.nodes[2], api.nodes[3]
        junk = set(await junk_grants(member, a, 30))
        honest = await granted(other, a, RecordMetadata(content_type="application/pdf"))
        fetches = Stalling(a, junk, stall=False)
        app = cast(httpx.ASGITransport, api.clients[0]._transport).app
        app.state.medvault.extra[CATALOG] = fetches.catalog()  # type: ignore[attr-defined]
        reader = api.token(0, "viewer", Scope.READ)
        for _ in range(3):
            answer = await api.clients[0].get("/fhir/DocumentReference", headers=reader)
            assert answer.status_code == 200, answer.text
            entries = answer.json()["entry"]
            assert [e["resource"]["id"] for e in entries[:-1]] == [honest.hex()]
            outcome = entries[-1]["resource"]
            assert outcome["issue"][0]["code"] == "incomplete"
            assert outcome["issue"][0]["diagnostics"].startswith(f"{len(junk)} ")
        junk_asked = [r for r in fetches.asked if r in junk]
        assert sorted(junk_asked) == sorted(junk)  # each once, by the first search


async def test_a_junk_flood_that_stalls_neither_hides_records_nor_multiplies_fetches(
    tmp_path: Path,
) -> None:
    """Junk whose holders never answer. Before: uncached records were described oldest
    first, so an honest record behind a flood waited for it (and was left out of every
    search, each ending at its time bound with the same junk in flight); and each search
    had its own limit of 8 fetches, so a burst of searches fetched 8 times as many."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member, other = api.nodes[0], api.nodes[2], api.nodes[3]
        honest = await granted(other, a, RecordMetadata(content_type="application/pdf"))
        junk = set(await junk_grants(member, a, 40))  # newer than the honest record
        fetches = Stalling(a, junk, stall=True)
        catalog = fetches.catalog(wait=0.5)
        visible = catalog.visible()
        _, missing = await catalog.describe_all(visible)
        assert honest in fetches.asked[:2]  # in the first turn, not behind 40 junk records
        assert missing >= len(junk) - 1
        first_round = set(fetches.asked) & junk
        assert 0 < len(first_round) <= DESCRIBE_AT_ONCE
        assert all(catalog.resting(r) for r in first_round)  # too slow: they rest
        # A burst of searches: together no more fetches at once than one search makes,
        # and none of them asks again for what rested.
        fetches.peak = 0
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(catalog.describe_all, visible)
        assert 0 < fetches.peak <= DESCRIBE_AT_ONCE
        junk_asked = [r for r in fetches.asked if r in junk]
        assert len(junk_asked) == len(set(junk_asked))


def owners(resource: dict[str, Any]) -> list[str]:
    return [
        e["valueIdentifier"]["value"]
        for e in resource.get("extension", [])
        if e.get("url") == systems.OWNER_EXTENSION
    ]


async def test_a_member_cannot_pass_its_document_off_as_another_hospitals(
    tmp_path: Path,
) -> None:
    """Any member may put a document about any patient (found by her search) naming any
    custodian and author. Before: nothing in the answer said which node put it, so a
    compromised member's document looked like hospital A's. Now the owner extension
    names the owner's node key from the ledger, and one claimed by the owner is dropped."""
    async with api_cluster(tmp_path, served=1) as api:
        a, member = api.nodes[0], api.nodes[2]
        patient = new_address()
        forged_owner = {
            "url": systems.OWNER_EXTENSION,
            "valueIdentifier": {"system": systems.NODE_KEY, "value": a.public_key.hex()},
        }
        claim = kept(
            custodian={"display": "Hospital A"},
            extension=[forged_owner, {"url": "urn:example:kept", "valueString": "x"}],
        )
        record = await granted(
            member,
            a,
            RecordMetadata(
                content_type="application/pdf",
                patient_ref=patient,
                extra={systems.DOCUMENT_KEY: claim},
            ),
        )
        reader = api.token(0, "viewer", Scope.READ)
        found = await api.clients[0].get(
            "/fhir/DocumentReference", params={"patient": patient}, headers=reader
        )
        (entry,) = found.json()["entry"]
        resource = entry["resource"]
        assert resource["id"] == record.hex()
        assert owners(resource) == [member.public_key.hex()]
        assert {"url": "urn:example:kept", "valueString": "x"} in resource["extension"]
        one = await api.clients[0].get(f"/fhir/DocumentReference/{record.hex()}", headers=reader)
        assert owners(one.json()) == [member.public_key.hex()]
