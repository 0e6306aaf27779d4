"""Counts with their noun in the right number."""

from __future__ import annotations

from protocol.text import counted


def test_counted_agrees_in_number() -> None:
    assert [counted(n, "node") for n in (0, 1, 2)] == ["0 nodes", "1 node", "2 nodes"]
    assert counted(1, "shard index", "shard indices") == "1 shard index"
    assert counted(3, "shard index", "shard indices") == "3 shard indices"
