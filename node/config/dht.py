"""The [dht] section: Kademlia's parameters (plain data, so config parsing needs nothing else)."""

from __future__ import annotations

from dataclasses import dataclass

from node.config.fields import setting


@dataclass(frozen=True)
class DhtConfig:
    k: int = setting(20, "Kademlia's k: contacts per bucket, nodes per answer.", low=1, high=100)
    alpha: int = setting(3, "Kademlia's alpha: queries in flight per lookup.", low=1, high=20)
    symbol_bits: int = setting(
        5, "Bits of the id per routing-table level (bucket splitting).", low=1, high=8
    )
    query_timeout: float = setting(
        2.0, "Seconds to wait for a peer's answer in a lookup.", low=0.05, high=60
    )
    query_attempts: int = setting(2, "Attempts per peer in a lookup.", low=1, high=5)
    refresh_interval: float = setting(
        3600.0, "Seconds before an idle bucket is refreshed.", low=10, high=86_400
    )
    republish_interval: float = setting(
        3600.0, "Seconds between republishing this node's announcements.", low=10, high=86_400
    )
    record_lifetime: float = setting(
        24 * 3600.0, "Seconds a provider announcement stays valid.", low=60, high=7 * 86_400
    )
    expire_interval: float = setting(
        60.0, "Seconds between sweeps of expired DHT records.", low=1, high=86_400
    )
    max_failures: int = setting(
        2,
        "Failed queries before a silent contact is evicted (only while other peers answer).",
        low=1,
        high=100,
    )
    join_refreshes: int = setting(4, "Random far regions looked up when joining.", low=0, high=160)
    join_retry_first: float = setting(
        0.5,
        "Seconds before a node that is joining (or whose table still grows) looks itself"
        " up again; the delay doubles up to join_retry_max.",
        low=0.01,
        high=600,
    )
    join_retry_max: float = setting(
        30.0, "Longest delay between those lookups, in seconds.", low=0.1, high=3600
    )
    quiet_time: float = setting(
        60.0,
        "Seconds without hearing any peer, while queries fail, after which the node"
        " takes itself for cut off and joins again.",
        low=1,
        high=86_400,
    )
    max_pings: int = setting(
        8, "Liveness pings of full buckets' oldest contacts in flight.", low=1, high=1000
    )
