"""Record storage parameters (plain data, so config parsing needs nothing else)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageConfig:
    # The hospital or building this node stands in; "" means the node itself.
    site: str = ""
    k: int = 4
    n: int = 8
    happy: int = 6
    segment_size: int = 1024 * 1024
    # Bytes of shard blocks this node accepts; 0 means no limit but the disk.
    quota_bytes: int = 0
    repair_interval: float = 600.0
    # Seconds before the shards of an upload that never finished are deleted.
    orphan_grace: float = 7 * 86_400.0
    transfer_batch_bytes: int = 2 * 1024 * 1024
    call_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n <= 255:
            raise ValueError(f"need 1 <= k <= n <= 255, got k={self.k}, n={self.n}")
        if not self.k <= self.happy <= self.n:
            raise ValueError(f"need k <= happy <= n, got happy={self.happy}")
