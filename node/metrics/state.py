"""Metrics read from a node's state when Prometheus scrapes, not kept as counters.

Gauges of what is (contacts, connections, ledger entries, store use, how far
each gossip peer is from us) and the counters the services already keep in
their plain `stats` (DHT lookups, gossip entries, failed connections) are read
here at scrape time: the services pay nothing for them. Every read is an
in-memory field or a length: no disk, no database, no lock. Values that need a
scan (orphans) come from the last upkeep pass (node/metrics/records.py).
Per-peer series are labelled by a peer's short key, for contacts of the
routing table only, so a peer that left drops out at the next scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.logs import short_key
from node.net.connections import HANDSHAKE, TIMEOUT, UNCERTIFIED, UNREACHABLE
from protocol.ids import node_id

if TYPE_CHECKING:
    from node.assembly import Node

# The labels of failed connections, each series shown from the start (at 0).
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "inbound": (HANDSHAKE, TIMEOUT, UNCERTIFIED),
    "outbound": (HANDSHAKE, TIMEOUT, UNCERTIFIED, UNREACHABLE),
}


class NodeCollector:
    """Yields the scrape-time metrics of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        yield from self._identity()
        yield from self._dht()
        yield from self._connections()
        yield from self._ledger()
        yield from self._store()

    def _identity(self) -> Iterator[Metric]:
        node = self.node
        info = GaugeMetricFamily(
            "medvault_node_info", "This node: its id (short) and site.", labels=["node_id", "site"]
        )
        info.add_metric([node_id(node.public_key).hex()[:16], node.shards.site], 1)
        yield info

    def _dht(self) -> Iterator[Metric]:
        dht = self.node.dht
        yield GaugeMetricFamily(
            "medvault_dht_contacts", "Contacts in the routing table.", value=len(dht.routing)
        )
        yield CounterMetricFamily(
            "medvault_dht_lookups", "Iterative DHT lookups run.", value=dht.stats.lookups
        )
        yield CounterMetricFamily(
            "medvault_dht_lookup_failures",
            "DHT lookups that found no live contact.",
            value=dht.stats.lookup_failures,
        )
        yield CounterMetricFamily(
            "medvault_dht_queries", "Queries sent by DHT lookups.", value=dht.stats.queries
        )
        yield CounterMetricFamily(
            "medvault_dht_query_failures",
            "DHT lookup queries that failed or timed out.",
            value=dht.stats.query_failures,
        )

    def _connections(self) -> Iterator[Metric]:
        manager = self.node.manager
        stats = manager.stats
        yield GaugeMetricFamily(
            "medvault_connections", "Peer connections open now.", value=len(manager.peers)
        )
        failed = CounterMetricFamily(
            "medvault_handshake_failures",
            "Connections not made: the handshake, the certificate or the dial failed.",
            labels=["direction", "reason"],
        )
        for direction, reasons in DIRECTIONS.items():
            for reason in reasons:
                failed.add_metric([direction, reason], stats.failed[direction, reason])
        yield failed
        refused = CounterMetricFamily(
            "medvault_connections_refused",
            "Inbound connections refused for want of room: handshake slots, connection limit.",
            labels=["reason"],
        )
        refused.add_metric(["busy"], stats.refused_busy)
        refused.add_metric(["full"], stats.refused_full)
        yield refused

    def _ledger(self) -> Iterator[Metric]:
        node = self.node
        ledger, gossip = node.ledger, node.gossip
        yield GaugeMetricFamily(
            "medvault_ledger_entries", "Entries in this node's ledger.", value=len(ledger.book)
        )
        state = ledger.state()
        yield GaugeMetricFamily(
            "medvault_ledger_records",
            "Records the ledger knows, deleted ones excepted.",
            value=len(state.records) - len(state.tombstones),
        )
        yield GaugeMetricFamily(
            "medvault_ledger_caught_up",
            "1 once peers showed no feed beyond this node's copy.",
            value=int(ledger.caught_up),
        )
        yield CounterMetricFamily(
            "medvault_gossip_entries_received",
            "Ledger entries peers sent by gossip (pulled or pushed).",
            value=gossip.stats.received,
        )
        yield CounterMetricFamily(
            "medvault_gossip_entries_accepted",
            "Gossiped entries new to this ledger and valid.",
            value=gossip.stats.accepted,
        )
        yield CounterMetricFamily(
            "medvault_gossip_exchanges",
            "Anti-entropy exchanges started.",
            value=gossip.stats.exchanges,
        )
        yield CounterMetricFamily(
            "medvault_gossip_failures",
            "Gossip calls to peers that failed.",
            value=gossip.stats.failures,
        )
        ahead = GaugeMetricFamily(
            "medvault_gossip_peer_ahead_entries",
            "Entries a peer showed that this ledger lacks, at the last exchange with it.",
            labels=["peer"],
        )
        behind = GaugeMetricFamily(
            "medvault_gossip_peer_behind_entries",
            "Entries this ledger has that a peer lacked, at the last exchange with it.",
            labels=["peer"],
        )
        for contact in node.dht.routing.contacts():
            lag = gossip.lag.get(contact.public_key)
            if lag is not None:
                ahead.add_metric([short_key(contact.public_key)], lag[0])
                behind.add_metric([short_key(contact.public_key)], lag[1])
        yield ahead
        yield behind

    def _store(self) -> Iterator[Metric]:
        store = self.node.parts.store
        yield GaugeMetricFamily(
            "medvault_store_used_bytes", "Bytes of shard blocks stored.", value=store.used_bytes
        )
        yield GaugeMetricFamily(
            "medvault_store_quota_bytes",
            "The store's quota in bytes (0: none set).",
            value=store.capacity or 0,
        )
