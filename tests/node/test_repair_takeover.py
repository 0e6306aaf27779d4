"""Repair cannot be captured (issue 13): a holder first in a record's coordinator order
that never repairs is replaced by the next holder after the deadline; an honest first
holder repairs alone, as before."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from node.assembly import Node
from node.config.gossip import GossipConfig
from node.logs import short_key
from node.records.repair import Repairer, RepairReport, Survey
from node.records.service import RecordService
from node.records.views import RecordViews
from node.sim.nodes import segments
from protocol.records.repair import coordinator_order
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, read_all, small_config

INTERVAL = 60.0
DEADLINE = 3 * INTERVAL  # the default: three repair intervals
ENDED = [trio.Event()]  # set and replaced whenever a watched repair ends


class Watched(Repairer):
    """A node's repairer that notes who repaired; `silent`: the adversarial member, which
    surveys like everyone (so it stays a live holder, first in the order) but never
    repairs."""

    def __init__(
        self,
        records: RecordService,
        views: RecordViews,
        repaired: list[bytes],
        silent: bool = False,
    ):
        super().__init__(records, views)
        self.repaired = repaired
        self.silent = silent
        self.started: list[float] = []  # when it began to repair (virtual time)
        self.done = trio.Event()  # set once it repaired (or tried to)

    async def repair(self, record_id: bytes, survey: Survey | None = None) -> RepairReport:
        if self.silent:
            health = (survey or await self.survey(record_id, verify=False)).health
            return RepairReport(health, note="silently ignored")
        self.repaired.append(self.records.public_key)
        self.started.append(trio.current_time())
        try:
            return await super().repair(record_id, survey)
        finally:
            self.done.set()
            ENDED[0].set()  # any repair ended: the test looks again
            ENDED[0] = trio.Event()


async def setup(cluster: Cluster, nursery: trio.Nursery) -> tuple[bytes, bytes, list[Node], Node]:
    """Eight nodes, a record on five; (record id, data, its holders in coordinator order,
    the last holder but the writer: the one whose crash loses a shard)."""
    # Ledger gossip slower than the tests' default: hours of virtual time pass here.
    config = dataclasses.replace(
        # Transfers get time: the autojump clock races ahead while CPU work runs.
        small_config(repair_interval=INTERVAL, call_timeout=30.0),
        gossip=GossipConfig(interval=5.0),
    )
    await cluster.add_many(nursery, 8, config)
    data = os.urandom(200_000)
    writer = cluster.nodes[0]
    result = await writer.records.put(segments(data, 64 * 1024), metadata=RecordMetadata())
    for node in cluster.nodes:
        while result.record_id not in node.ledger.state().records:
            await node.ledger.changed()
    by_key = {n.public_key: n for n in cluster.nodes}
    holders = holders_of(cluster, result.record_id)
    assert len(holders) == 5
    order = [
        by_key[k] for k in coordinator_order(result.record_id, [h.public_key for h in holders])
    ]
    lost = next(n for n in reversed(order) if n is not writer)  # the writer reads at the end
    return result.record_id, data, order, lost


async def healthy_again(checker: Node, record_id: bytes) -> None:
    """Wait until the record is healthy: a transfer the autojump clock timed out while
    CPU work ran is retried by a later repair."""
    with trio.fail_after(4 * DEADLINE):
        while not (await checker.repairer.check(record_id)).healthy:
            await ENDED[0].wait()


async def repair_started(node: Node, since: float) -> float:
    """Seconds from `since` until the node began to repair (failing, not hanging, if it
    never does within four deadlines)."""
    watcher = node.upkeep.repairer
    assert isinstance(watcher, Watched)
    with trio.fail_after(4 * DEADLINE):
        await watcher.done.wait()
    return watcher.started[0] - since


def watch(nodes: list[Node], repaired: list[bytes], silent: Node | None = None) -> None:
    for node in nodes:
        node.upkeep.repairer = Watched(node.records, node.views, repaired, silent=node is silent)


async def test_a_first_holder_that_never_repairs_is_replaced_after_the_deadline(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        record_id, data, order, lost = await setup(cluster, nursery)
        order.remove(lost)
        adversary, second = order[0], order[1]
        repaired: list[bytes] = []
        watch(cluster.nodes, repaired, silent=adversary)
        cluster.crash(lost)  # a shard is lost; the adversary stays first of the rest
        lost_at = trio.current_time()

        took = await repair_started(second, lost_at)
        # Nobody jumped in before the deadline; the second took over within it plus a pass
        # (a pass to first see the loss, the deadline, its next pass; passes take time too).
        assert DEADLINE <= took <= DEADLINE + 3 * INTERVAL, took
        await healthy_again(second, record_id)
        assert set(repaired) == {second.public_key}
        health = await second.repairer.check(record_id)
        assert health.healthy and adversary.public_key in health.holders
        assert await read_all(cluster.nodes[0], record_id) == data

        count = len(repaired)
        await trio.sleep(DEADLINE + INTERVAL)  # healthy again: nobody repairs any more
        assert len(repaired) == count
        takeovers = [r for r in caplog.records if r.getMessage() == "repair taken over"]
        assert len(takeovers) == 1  # logged once, naming the silent coordinator
        fields = takeovers[0].__dict__["fields"]
        assert fields["peer"] == short_key(adversary.public_key)
        assert fields["unhealthy_for"] >= DEADLINE
        nursery.cancel_scope.cancel()


async def test_two_silent_holders_in_a_row_delay_repair_by_a_deadline_each(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        record_id, _, order, lost = await setup(cluster, nursery)
        order.remove(lost)
        repaired: list[bytes] = []
        watch(cluster.nodes, repaired)
        for node in order[:2]:
            assert isinstance(node.upkeep.repairer, Watched)
            node.upkeep.repairer.silent = True
        cluster.crash(lost)
        lost_at = trio.current_time()
        took = await repair_started(order[2], lost_at)
        assert 2 * DEADLINE <= took <= 2 * DEADLINE + 3 * INTERVAL, took
        await healthy_again(order[2], record_id)
        assert set(repaired) == {order[2].public_key}
        nursery.cancel_scope.cancel()


async def test_an_honest_first_holder_repairs_alone_within_a_pass(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        record_id, data, order, lost = await setup(cluster, nursery)
        order.remove(lost)
        repaired: list[bytes] = []
        watch(cluster.nodes, repaired)
        cluster.crash(lost)
        lost_at = trio.current_time()
        took = await repair_started(order[0], lost_at)
        assert took < DEADLINE  # at its first pass after the loss
        await healthy_again(order[0], record_id)
        await trio.sleep(DEADLINE + INTERVAL)  # no second holder repairs the same shards
        assert set(repaired) == {order[0].public_key}
        assert await read_all(cluster.nodes[0], record_id) == data
        assert not [r for r in caplog.records if r.getMessage() == "repair taken over"]
        nursery.cancel_scope.cancel()


async def test_a_dead_first_holder_is_replaced_at_once_and_no_offence_is_logged(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        record_id, _, order, _ = await setup(cluster, nursery)
        repaired: list[bytes] = []
        watch(cluster.nodes, repaired)
        cluster.crash(order[0])  # the coordinator itself is lost with its shard
        lost_at = trio.current_time()
        took = await repair_started(order[1], lost_at)
        assert took < DEADLINE  # nobody waits for the dead one
        await healthy_again(order[1], record_id)
        assert set(repaired) == {order[1].public_key}
        assert not [r for r in caplog.records if r.getMessage() == "repair taken over"]
        nursery.cancel_scope.cancel()
