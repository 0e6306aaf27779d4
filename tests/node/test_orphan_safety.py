"""A node whose ledger has not caught up never takes shards of real records for leftovers:
neither the orphan rule nor `gc` deletes them until peers showed it nothing it lacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from node.control.ops import ControlOps
from node.records.errors import RecordError
from node.sim.nodes import segments
from protocol.control.commands import Gc
from protocol.ledger.book import LedgerBook
from protocol.ledger.confirm import FeedConfirmation
from protocol.ledger.live import LiveState
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, small_config


async def test_shards_are_not_orphans_while_the_ledger_lags(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config(orphan_grace=0.0, unrecorded_grace=0.0))
        writer = cluster.nodes[0]
        result = await writer.records.put(
            segments(os.urandom(100_000), 64 * 1024), metadata=RecordMetadata()
        )
        holder = next(
            n for n in cluster.nodes[1:] if n.shards.holdings.indices(result.record_id)[0]
        )
        # The holder's ledger is lost (a restore without it): it knows no record,
        # and has not heard from its peers since (its gossip cannot reach them).

        async def unreachable(*args: object) -> None:
            pass

        monkeypatch.setattr(holder.gossip, "_pull_and_hear", unreachable)
        holder.ledger.book = LedgerBook()
        holder.ledger.live = LiveState()
        holder.ledger.confirmation = FeedConfirmation(holder.public_key)
        holder.ledger.ledger_caught_up = trio.Event()
        assert result.record_id not in holder.ledger.state().records
        with pytest.raises(RecordError, match="not caught up"):
            await ControlOps(holder, started=0).gc(Gc(0))
        await holder.upkeep.run_pass()
        assert result.record_id in holder.shards.holdings.records()  # kept
        monkeypatch.undo()
        await holder.ledger.ledger_caught_up.wait()  # gossip brings the ledger back
        assert result.record_id in holder.ledger.state().records
        await holder.upkeep.run_pass()
        reply = await ControlOps(holder, started=0).gc(Gc(0))
        assert reply.records == 0 and result.record_id in holder.shards.holdings.records()
        nursery.cancel_scope.cancel()
