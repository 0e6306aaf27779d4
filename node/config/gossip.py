"""Gossip parameters (plain data, so config parsing needs nothing else of gossip)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GossipConfig:
    interval: float = 1.0
    fanout: int = 3
    push_fanout: int = 3
    batch: int = 64
    budget: int = 256
    call_timeout: float = 2.0
