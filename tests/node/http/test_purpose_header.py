"""`X-Purpose-Of-Use` on HTTP reads: the purpose reaches the owner's audit; a bad value is
a 400 that names the vocabulary, and nothing is read or logged."""

from __future__ import annotations

import os
from pathlib import Path

from node.control.ops import ControlOps
from node.http.tokens import Scope
from protocol.control.commands import Audit
from tests.node.cluster import knows_grant
from tests.node.http.harness import api_cluster


async def test_a_read_for_payment_shows_as_hpaymt_in_the_owners_audit(tmp_path: Path) -> None:
    async with api_cluster(tmp_path) as api:
        owner, reader = api.nodes[0], api.nodes[1]
        data = os.urandom(90_000)
        writer = api.token(0, "EHR-A", Scope.WRITE)
        put = await api.clients[0].post("/v1/records", content=data, headers=writer)
        assert put.status_code == 201, put.text
        rid = bytes.fromhex(put.json()["record_id"])
        await owner.records.grant(rid, reader.public_key)
        await knows_grant(reader, rid, reader.public_key)
        token = api.token(1, "billing", Scope.READ)

        bad = await api.clients[1].get(
            f"/v1/records/{rid.hex()}", headers=token | {"X-Purpose-Of-Use": "curiosity"}
        )
        assert bad.status_code == 400
        message = bad.json()["error"]["message"]
        assert "X-Purpose-Of-Use" in message and "payment" in message and "treatment" in message

        got = await api.clients[1].get(
            f"/v1/records/{rid.hex()}", headers=token | {"X-Purpose-Of-Use": "payment"}
        )
        assert got.status_code == 200 and got.content == data
        while not any(r.reader == reader.public_key for r in owner.ledger.state().reads_of(rid)):
            await owner.ledger.changed()
        audit = await ControlOps(owner, started=0.0).audit(Audit(rid))
        reads = [row for row in audit.rows if row.node is not None]
        assert [(row.who, row.purpose, row.kind) for row in reads] == [
            (reader.public_key, "HPAYMT", "read")
        ]  # the refused request read nothing and logged nothing
