"""Requests whose whole body is held in memory (ITI-65 Bundles, Binary resources) wait for
one of a few slots, so a write token's concurrent 64 MiB Bundles cannot add up."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
import trio.testing

from node.http.context import WHOLE_BODIES_AT_ONCE, HttpContext
from node.http.tokens import Scope
from tests.node.http.fhir_bundles import FHIR, new_address, provide_bundle, small_pdf
from tests.node.http.harness import api_cluster


async def test_a_bundle_waits_for_a_slot(tmp_path: Path) -> None:
    async with api_cluster(tmp_path, served=1) as api:
        client = api.clients[0]
        writer = api.token(0, "EHR-A", Scope.WRITE)
        ctx = client._transport.app.state.medvault  # type: ignore[attr-defined]
        assert isinstance(ctx, HttpContext)
        holders = [object() for _ in range(WHOLE_BODIES_AT_ONCE)]
        for holder in holders:  # every slot taken, as by other uploads in flight
            ctx.whole_bodies.acquire_on_behalf_of_nowait(holder)
        answers: list[httpx.Response] = []

        async def post() -> None:
            bundle = provide_bundle(small_pdf(1000), new_address())
            answers.append(await client.post("/fhir", json=bundle, headers=writer | FHIR))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == []  # waiting for a slot: nothing read, nothing stored
            assert ctx.whole_bodies.statistics().tasks_waiting == 1
            ctx.whole_bodies.release_on_behalf_of(holders[0])
        assert answers[0].status_code == 200, answers[0].text
        ctx.whole_bodies.release_on_behalf_of(holders[1])
        assert ctx.whole_bodies.borrowed_tokens == 0
