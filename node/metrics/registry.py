"""One node's metrics: its own registry, and the text a `/metrics` route serves.

Each node owns a CollectorRegistry (never prometheus_client's global one:
tests and simulations run many nodes in one process, and each must count
only its own). Node.__init__ makes one as `node.metrics` and gives its
`records` part to the record service; `watch` adds what is read from the
node's state at scrape time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest

from node.metrics.records import RecordMetrics
from node.metrics.state import NodeCollector

if TYPE_CHECKING:
    from node.assembly import Node

# What generate_latest writes: the classic text format every Prometheus reads (the
# library's CONTENT_TYPE_LATEST names 1.0.0 in recent versions, for UTF-8 names we
# do not use).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = RecordMetrics(self.registry)

    def watch(self, node: Node) -> None:
        """Read `node`'s state at every scrape (called once, when the node is built)."""
        self.registry.register(NodeCollector(node))

    def exposition(self) -> bytes:
        """Every metric of this node in the Prometheus text format."""
        return generate_latest(self.registry)


def exposition(node: Node) -> bytes:
    """The body of a `/metrics` answer for `node` (served with CONTENT_TYPE)."""
    return node.metrics.exposition()
