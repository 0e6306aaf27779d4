"""The [gossip] section: the ledger's anti-entropy rounds (plain data, parsed alone)."""

from __future__ import annotations

from dataclasses import dataclass

from node.config.fields import setting


@dataclass(frozen=True)
class GossipConfig:
    interval: float = setting(1.0, "Seconds between anti-entropy rounds.", low=0.05, high=3600)
    fanout: int = setting(3, "Peers asked per round.", low=1, high=50)
    push_fanout: int = setting(3, "Peers a new ledger entry is pushed to at once.", low=0, high=50)
    batch: int = setting(64, "Entries fetched per feed per exchange.", low=1, high=1000)
    budget: int = setting(256, "Entries fetched per exchange in all.", low=1, high=10_000)
    intake_rate: float = setting(
        100.0,
        "Entries per second one author's feed may add to this node once its burst is spent"
        " (beyond it entries are deferred: gossip offers them again later).",
        low=1.0,
        high=100_000.0,
    )
    intake_burst: int = setting(
        20_000, "Entries one author's feed may add to this node at once.", low=1, high=10_000_000
    )
    call_timeout: float = setting(
        2.0, "Seconds to wait for a peer's answer in an exchange.", low=0.05, high=600
    )
