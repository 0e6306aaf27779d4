"""/metrics over HTTP: a read token gets the node's exposition, which prometheus_client's
parser reads and whose counters move with a put and a get made through the API."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from node.http.tokens import Scope
from tests.node.http.harness import api_cluster


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_move_with_a_put_and_a_get(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        monitor = api.token(0, "prometheus", Scope.READ)
        writer = api.token(0, "EHR", Scope.WRITE)
        assert (await client.get("/metrics")).status_code == 401
        before_answer = await client.get("/metrics", headers=monitor)
        assert before_answer.status_code == 200
        assert before_answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        before = samples(before_answer.text)

        data = os.urandom(200_000)
        put = await client.post("/v1/records", content=data, headers=writer)
        assert put.status_code == 201
        got = await client.get(f"/v1/records/{put.json()['record_id']}", headers=writer)
        assert got.content == data

        after = samples((await client.get("/metrics", headers=monitor)).text)

        def moved(name: str) -> float:
            return after[(name, ())] - before.get((name, ()), 0.0)

        assert moved("medvault_puts_total") == 1
        assert moved("medvault_put_bytes_total") == len(data)
        assert moved("medvault_put_duration_seconds_count") == 1
        assert moved("medvault_gets_total") == 1
        assert moved("medvault_get_duration_seconds_count") == 1
        assert moved("medvault_get_bytes_total") >= len(data)
