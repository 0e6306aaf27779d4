"""DHT parameters (plain data, so config parsing needs nothing else of the DHT)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DhtConfig:
    k: int = 20
    alpha: int = 3
    symbol_bits: int = 5
    query_timeout: float = 2.0
    query_attempts: int = 2
    refresh_interval: float = 3600.0
    republish_interval: float = 3600.0
    record_lifetime: float = 24 * 3600.0
    expire_interval: float = 60.0
    max_failures: int = 2
    join_refreshes: int = 4
    max_pings: int = 8
