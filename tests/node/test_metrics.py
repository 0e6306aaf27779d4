"""A node's Prometheus metrics, read back through the exposition as Prometheus would.

Whole nodes (the daemon's assembly) on the memory transport: a put, a get, a
failure, a repair must move exactly the series that say so, on the node that
did it and no other.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from node.assembly import Node
from node.logs import short_key
from node.metrics.records import GET_REASONS, PUT_REASONS, RecordMetrics, failure_reason
from node.metrics.registry import CONTENT_TYPE, exposition
from node.net.errors import PeerUnreachable
from node.records.errors import RecordError
from node.records.repair import shard_size
from node.sim.nodes import segments
from protocol.dht.contact import Contact
from protocol.ledger.messages import FeedHead
from protocol.records.repair import coordinator_order
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, holders_of, knows_grant, read_all, small_config
from tests.node.nodes import address_of, start_node
from tests.protocol.keys import signing_key

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SEGMENT = 64 * 1024
QUIET = {"repair_interval": 7 * 86_400.0}  # no background pass moves the repair series


def scrape(node: Node) -> Samples:
    """Every sample of the node's exposition, parsed by prometheus_client's own parser."""
    found: Samples = {}
    for family in text_string_to_metric_families(exposition(node).decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples) -> dict[str, float]:
    """The medvault series that changed (by name and labels), and by how much; gauges
    and timestamps too, minus the `_created` series a counter carries."""
    keys = before.keys() | after.keys()
    changes = {}
    for name, labels in keys:
        if name.endswith("_created"):
            continue
        delta = after.get((name, labels), 0.0) - before.get((name, labels), 0.0)
        if delta:
            changes[name + "".join(f"{{{k}={v}}}" for k, v in labels)] = delta
    return changes


TRANSFER_SERIES = {
    "medvault_puts_total",
    "medvault_put_bytes_total",
    "medvault_put_duration_seconds_count",
    "medvault_gets_total",
    "medvault_get_bytes_total",
    "medvault_get_duration_seconds_count",
    "medvault_puts_degraded_total",
}


def transfers(changes: dict[str, float]) -> dict[str, float]:
    """The put/get series among `changes` (buckets and sums aside: they are times)."""
    return {
        name: delta
        for name, delta in changes.items()
        if name.split("{")[0] in TRANSFER_SERIES
        or name.startswith(("medvault_put_failures", "medvault_get_failures"))
    }


async def test_a_put_and_a_get_move_their_counters_by_exactly_what_happened(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(**QUIET))
        writer, reader = cluster.nodes[0], cluster.nodes[3]
        data = os.urandom(150_000)  # three segments
        before = scrape(writer)
        result = await writer.records.put(
            segments(data, SEGMENT), metadata=RecordMetadata(), grantees=[reader.public_key]
        )
        assert not result.verdict.degraded
        after_put = scrape(writer)
        assert transfers(moved(before, after_put)) == {
            "medvault_puts_total": 1,
            "medvault_put_bytes_total": 150_000,
            "medvault_put_duration_seconds_count": 1,
        }

        assert await read_all(writer, result.record_id) == data
        after_get = scrape(writer)
        assert transfers(moved(after_put, after_get)) == {
            "medvault_gets_total": 1,
            "medvault_get_bytes_total": 150_000,
            "medvault_get_duration_seconds_count": 1,
        }
        # The same read on another node counts there, not on the writer.
        reader_before = scrape(reader)
        await knows_grant(reader, result.record_id, reader.public_key)
        assert await read_all(reader, result.record_id) == data
        assert transfers(moved(reader_before, scrape(reader))) == {
            "medvault_gets_total": 1,
            "medvault_get_bytes_total": 150_000,
            "medvault_get_duration_seconds_count": 1,
        }
        assert transfers(moved(after_get, scrape(writer))) == {}
        assert value(scrape(reader), "medvault_puts_total") == 0
        nursery.cancel_scope.cancel()


async def test_a_read_as_another_key_counts_the_ciphertext_it_streams(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The control socket's `get --as` path: open with permits, then the fetcher's
    ciphertext (what goes out: padded, with one MAC per segment)."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(**QUIET))
        writer, other = cluster.nodes[0], cluster.nodes[2]
        result = await writer.records.put(
            segments(os.urandom(10_000), SEGMENT),
            metadata=RecordMetadata(),
            grantees=[other.public_key],
        )
        await knows_grant(writer, result.record_id, other.public_key)
        signer = other.parts.identity
        permit = writer.records.permit_as(result.record_id, signer)
        before = scrape(writer)
        handle = await writer.records.open(result.record_id, other.public_key, [permit])
        streamed = [c async for _, c in handle.fetcher.ciphertext()]
        assert transfers(moved(before, scrape(writer))) == {
            "medvault_gets_total": 1,
            "medvault_get_bytes_total": sum(len(c) for c in streamed),
            "medvault_get_duration_seconds_count": 1,
        }
        nursery.cancel_scope.cancel()


async def test_failed_puts_count_one_failure_each_by_reason(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 3, small_config(**QUIET))  # happy is 4
        node = cluster.nodes[0]
        before = scrape(node)
        with pytest.raises(RecordError, match="network too small") as small:
            await node.records.put(segments(b"x" * 1000, SEGMENT), metadata=RecordMetadata())
        assert small.value.reason == "network_too_small"
        with pytest.raises(RecordError, match="grantee"):
            await node.records.put(
                segments(b"x" * 1000, SEGMENT), metadata=RecordMetadata(), grantees=[b"bad"]
            )
        assert transfers(moved(before, scrape(node))) == {
            "medvault_puts_total": 2,
            "medvault_put_failures_total{reason=network_too_small}": 1,
            "medvault_put_failures_total{reason=bad_request}": 1,
        }
        nursery.cancel_scope.cancel()


async def test_a_put_degraded_by_a_small_network_is_counted_as_stored_and_degraded(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 4, small_config(**QUIET))  # n=5, happy=4
        node = cluster.nodes[0]
        before = scrape(node)
        result = await node.records.put(segments(b"y" * 5000, SEGMENT), metadata=RecordMetadata())
        assert result.verdict.degraded
        assert transfers(moved(before, scrape(node))) == {
            "medvault_puts_total": 1,
            "medvault_puts_degraded_total": 1,
            "medvault_put_bytes_total": 5000,
            "medvault_put_duration_seconds_count": 1,
        }
        nursery.cancel_scope.cancel()


async def test_failed_gets_count_by_reason_and_an_abandoned_read_as_cancelled(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 6, small_config(**QUIET))
        writer, stranger = cluster.nodes[0], cluster.nodes[5]
        data = os.urandom(200_000)  # four segments
        result = await writer.records.put(segments(data, SEGMENT), metadata=RecordMetadata())
        record_id = result.record_id
        while record_id not in stranger.ledger.state().records:
            await stranger.ledger.changed()

        before = scrape(stranger)
        with pytest.raises(RecordError, match="unknown record"):
            await stranger.records.open(b"\x01" * 32)
        with pytest.raises(RecordError, match="no grant"):
            await stranger.records.open(record_id)
        assert transfers(moved(before, scrape(stranger))) == {
            "medvault_gets_total": 2,
            "medvault_get_failures_total{reason=not_found}": 1,
            "medvault_get_failures_total{reason=no_grant}": 1,
        }

        # A reader that stops after the first segment (a client that hung up).
        before = scrape(writer)
        handle = await writer.records.open(record_id)
        plaintext = writer.records.plaintext(handle, writer.records.record_key(handle))
        stream = cast(AsyncGenerator[bytes, None], plaintext)  # an async generator
        first = await stream.__anext__()
        await stream.aclose()
        assert transfers(moved(before, scrape(writer))) == {
            "medvault_gets_total": 1,
            "medvault_get_bytes_total": len(first),
            "medvault_get_failures_total{reason=cancelled}": 1,
        }

        # A byte range (segments 1 to 2 of 4) that ends early is a complete get.
        before = scrape(writer)
        handle = await writer.records.open(record_id)
        key = writer.records.record_key(handle)
        parts = [p async for p in writer.records.plaintext(handle, key, 1, 2)]
        assert b"".join(parts) == data[SEGMENT : 3 * SEGMENT]
        assert transfers(moved(before, scrape(writer))) == {
            "medvault_gets_total": 1,
            "medvault_get_bytes_total": 2 * SEGMENT,
            "medvault_get_duration_seconds_count": 1,
        }

        # Fewer than k holders left: the manifest comes, the blocks do not.
        holders = [n for n in holders_of(cluster, record_id) if n is not writer]
        for node in holders[: len(holders) - 1]:
            cluster.crash(node)
        before = scrape(writer)
        with pytest.raises(Exception, match="segment"):
            await read_all(writer, record_id)
        assert transfers(moved(before, scrape(writer))) == {
            "medvault_gets_total": 1,
            "medvault_get_failures_total{reason=too_few_shards}": 1,
        }
        nursery.cancel_scope.cancel()


def test_failure_labels_stay_in_their_fixed_set() -> None:
    """No message, key or unexpected reason becomes a label value."""
    assert failure_reason(RecordError("record 0011 unknown", reason="no_such"), PUT_REASONS) == (
        "error"
    )
    assert failure_reason(RecordError("x", reason="not_found"), PUT_REASONS) == "error"
    assert failure_reason(RecordError("x", reason="not_found"), GET_REASONS) == "not_found"
    assert failure_reason(ValueError("patient 42"), GET_REASONS) == "error"
    group = BaseExceptionGroup("put", [RecordError("x", reason="too_few_holders")])
    assert failure_reason(group, PUT_REASONS) == "too_few_holders"


async def test_a_repair_moves_the_repair_series_on_the_repairer(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 8, small_config(**QUIET))
        result = await cluster.nodes[0].records.put(
            segments(os.urandom(200_000), SEGMENT), metadata=RecordMetadata()
        )
        record_id = result.record_id
        for node in cluster.nodes:
            while record_id not in node.ledger.state().records:
                await node.ledger.changed()
        holders = holders_of(cluster, record_id)
        for node in holders[-2:]:
            cluster.crash(node)
        live = holders[:-2]
        first = coordinator_order(record_id, [n.public_key for n in live])[0]
        coordinator = next(n for n in live if n.public_key == first)
        bystander = next(n for n in live if n is not coordinator)

        # A holder that does not coordinate sees the record below n, and repairs nothing.
        before = scrape(bystander)
        assert await bystander.upkeep.run_pass() == []
        seen = scrape(bystander)
        assert value(seen, "medvault_records_below_n") == 1
        assert value(seen, "medvault_records_held") == 1
        assert value(seen, "medvault_repair_passes_total") == 1
        assert value(seen, "medvault_repair_pass_duration_seconds_count") == 1
        assert value(seen, "medvault_repair_last_pass_timestamp_seconds") > 1e9  # unix time
        assert value(seen, "medvault_repair_rebuilt_shards_total") == 0
        assert moved(before, seen).keys() >= {"medvault_records_below_n"}

        before = scrape(coordinator)
        (report,) = await coordinator.upkeep.run_pass()
        assert len(report.placed) == 2 and not report.failed
        after = scrape(coordinator)
        manifest = coordinator.shards.manifest(record_id)
        assert manifest is not None
        assert value(after, "medvault_repair_rebuilt_shards_total") == 2
        assert value(after, "medvault_repair_bytes_total") == 2 * shard_size(manifest)
        assert value(after, "medvault_repair_target_failures_total") == 0
        assert value(after, "medvault_records_below_n") == 0  # repaired within the pass
        assert value(after, "medvault_repair_passes_total") == 1
        # Nothing of the repair shows on the bystander.
        assert value(scrape(bystander), "medvault_repair_rebuilt_shards_total") == 0
        assert transfers(moved(before, after)) == {}  # a repair is no get
        nursery.cancel_scope.cancel()


async def test_store_dht_ledger_and_gossip_series_come_from_the_nodes_state(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(quota_bytes=10_000_000, **QUIET))
        writer, peer = cluster.nodes[0], cluster.nodes[1]
        await writer.records.put(segments(b"z" * 30_000, SEGMENT), metadata=RecordMetadata())
        await writer.announcements_done()  # its own, started once the record was recorded
        samples = scrape(writer)
        assert value(samples, "medvault_store_quota_bytes") == 10_000_000
        assert value(samples, "medvault_store_used_bytes") == writer.parts.store.used_bytes
        assert value(samples, "medvault_dht_contacts") == len(writer.dht.routing) == 4
        assert value(samples, "medvault_ledger_entries") == len(writer.ledger.book) == 2
        assert value(samples, "medvault_ledger_records") == 1
        assert value(samples, "medvault_connections") == len(writer.manager.peers) > 0

        lookups = value(samples, "medvault_dht_lookups_total")
        await writer.dht.find_node(os.urandom(20))
        assert value(scrape(writer), "medvault_dht_lookups_total") == lookups + 1

        # After an exchange both ledgers hold the same entries: no lag either way.
        await writer.gossip.exchange(peer.contact)
        await trio.testing.wait_all_tasks_blocked()
        label = short_key(peer.public_key)
        samples = scrape(writer)
        assert value(samples, "medvault_gossip_peer_ahead_entries", peer=label) == 0
        assert ("medvault_gossip_peer_behind_entries", (("peer", label),)) in samples
        assert value(scrape(peer), "medvault_gossip_entries_accepted_total") >= 2
        # A peer that left the routing table leaves the metrics with it.
        writer.dht.forget(peer.public_key)
        gone = scrape(writer)
        assert not [k for k in gone if ("peer", label) in k[1]]
        nursery.cancel_scope.cancel()


async def test_gossip_lag_names_only_routing_table_peers_whatever_they_claim(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Members that are not in the routing table (fifty of them) add no series; one
    that lies about its heads inflates its own series only."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 3, small_config(**QUIET))
        node, liar = cluster.nodes[0], cluster.nodes[1]
        claims = (FeedHead(os.urandom(32), 1_000_000, 1_000_000, os.urandom(16)),)
        strangers = [nacl_key(f"stranger {i}") for i in range(50)]
        for i, key in enumerate(strangers):  # in no table, where nobody serves (pulls fail)
            await node.gossip._pull_and_hear(Contact(key, f"mem-x{i}:1"), claims)
        await node.gossip._pull_and_hear(liar.contact, claims)
        samples = scrape(node)
        labels = {
            dict(k[1])["peer"] for k in samples if k[0] == "medvault_gossip_peer_ahead_entries"
        }
        table = {short_key(c.public_key) for c in node.dht.routing.contacts()}
        assert short_key(liar.public_key) in labels <= table
        assert not set(node.gossip.lag) & set(strangers)
        label = short_key(liar.public_key)
        assert value(samples, "medvault_gossip_peer_ahead_entries", peer=label) == 1_000_000
        nursery.cancel_scope.cancel()


def nacl_key(name: str) -> bytes:
    return bytes(signing_key(name).verify_key)


async def test_handshake_failures_count_by_direction_and_reason_in_a_fixed_set(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Outsiders with another network key, dialing in a hundred times and dialed once:
    the counts move, the label sets do not grow."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 2, small_config(**QUIET))
        node = cluster.nodes[0]
        labels_before = {k for k in scrape(node) if k[0] == "medvault_handshake_failures_total"}
        outsiders = [
            await start_node(
                nursery,
                cluster.network.transport(f"mem-outsider-{i}:1"),
                f"outsider {i}",
                network_key=b"\x07" * 32,
            )
            for i in range(100)
        ]
        for outsider in outsiders:
            with pytest.raises(PeerUnreachable):
                await outsider.connect(address_of(node.manager))
        with pytest.raises(PeerUnreachable):
            await node.manager.connect(address_of(outsiders[0]))
        await trio.testing.wait_all_tasks_blocked()
        samples = scrape(node)
        failures = {k for k in samples if k[0] == "medvault_handshake_failures_total"}
        assert failures == labels_before and len(failures) == 7
        name = "medvault_handshake_failures_total"
        assert value(samples, name, direction="inbound", reason="handshake") == 100
        assert value(samples, name, direction="outbound", reason="handshake") == 1
        assert value(samples, "medvault_connections") == 1  # the other member, still there
        nursery.cancel_scope.cancel()


async def test_two_nodes_in_one_process_keep_separate_registries(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config(**QUIET))
        a, b = cluster.nodes[0], cluster.nodes[1]
        assert a.metrics.registry is not b.metrics.registry
        await a.records.put(segments(b"a" * 100, SEGMENT), metadata=RecordMetadata())
        await a.records.put(segments(b"a" * 100, SEGMENT), metadata=RecordMetadata())
        await b.records.put(segments(b"b" * 100, SEGMENT), metadata=RecordMetadata())
        assert value(scrape(a), "medvault_puts_total") == 2
        assert value(scrape(b), "medvault_puts_total") == 1
        assert value(scrape(a), "medvault_put_bytes_total") == 200
        assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
        nursery.cancel_scope.cancel()


async def test_a_get_meter_runs_its_end_callbacks_once_whichever_way_it_ends() -> None:
    # A small get's read statement is logged from here (node/records/service.py `_open`):
    # exactly once, whether the get finished, failed, or had already ended.
    metrics = RecordMetrics()
    calls: list[str] = []
    done = metrics.get_started()
    done.when_ended(lambda: calls.append("finished"))
    assert calls == []
    done.finished()
    done.finished()
    done.failed(RuntimeError("late"))
    failed = metrics.get_started()
    failed.when_ended(lambda: calls.append("failed"))
    failed.failed(RuntimeError("boom"))
    failed.finished()
    failed.when_ended(lambda: calls.append("after the end"))
    assert calls == ["finished", "failed", "after the end"]
