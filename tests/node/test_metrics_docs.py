"""The Grafana dashboard and the alert rules in docs/monitoring/ name only series a node
exposes, with labels and label values it uses: the docs cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from node.metrics.registry import exposition
from node.sim.nodes import segments
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, small_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
# A medvault series, and the label matchers of its selector if it has one.
SELECTOR = re.compile(r"\b(medvault_[a-z0-9_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
NOT_OURS = {"instance", "job"}  # labels Prometheus adds at scrape time


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard's panels and variables, and of the rules."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("expr", "definition") and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads((DOCS / "grafana-dashboard.json").read_text()))
    rules = (DOCS / "alerts.yml").read_text()
    # `expr:` values are one line or a folded block (indented lines after `expr: >-`).
    for match in re.finditer(r"expr:\s*(>-\n(?:\s{10,}.*\n)+|.*)", rules):
        found.append(match.group(1).removeprefix(">-"))
    return found


def test_the_docs_name_many_series_and_every_rule_has_an_expression() -> None:
    rules = (DOCS / "alerts.yml").read_text()
    assert rules.count("- alert:") == len(re.findall(r"\n\s+expr:", rules)) >= 8
    names = {m.group(1) for e in expressions() for m in SELECTOR.finditer(e)}
    assert len(names) >= 30


async def test_every_series_the_docs_use_is_exposed_with_those_labels(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, 5, small_config())
        node = cluster.nodes[0]
        await node.records.put(segments(b"x" * 100, 1024), metadata=RecordMetadata())
        await node.gossip.exchange(cluster.nodes[1].contact)  # per-peer series exist
        await trio.testing.wait_all_tasks_blocked()
        labels: dict[str, dict[str, set[str]]] = {}
        for family in text_string_to_metric_families(exposition(node).decode()):
            for sample in family.samples:
                seen = labels.setdefault(sample.name, {})
                for key, value in sample.labels.items():
                    seen.setdefault(key, set()).add(value)
        nursery.cancel_scope.cancel()

    for expr in expressions():
        for selector in SELECTOR.finditer(expr):
            name, matchers = selector.group(1), selector.group(2) or ""
            assert name in labels, f"{name} (in {expr!r}) is not exposed"
            for key, op, wanted in MATCHER.findall(matchers):
                if key in NOT_OURS:
                    continue
                assert key in labels[name], f"{name} has no label {key} (in {expr!r})"
                if op in ("=", "!="):
                    values = [wanted]
                elif "$" in wanted:
                    continue  # a dashboard variable
                else:
                    values = wanted.split("|")
                for value in values:
                    assert value in labels[name][key], f"{name}{{{key}={value!r}}} never occurs"
