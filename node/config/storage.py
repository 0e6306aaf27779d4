"""The [storage] section: how records are coded and kept (plain data, parsed alone)."""

from __future__ import annotations

from dataclasses import dataclass

from node.config.fields import setting
from protocol.records.messages import MAX_SITE_LENGTH


@dataclass(frozen=True)
class StorageConfig:
    site: str = setting(
        "",
        "The hospital or building this node stands in; shards of one record are spread over"
        " distinct sites first. Empty: the node counts as its own site.",
        max_length=MAX_SITE_LENGTH,
    )
    k: int = setting(
        4, "Erasure code of new records: any k of n shards rebuild a record.", low=1, high=255
    )
    n: int = setting(8, "Shards per segment of a new record.", low=1, high=255)
    happy: int = setting(
        6,
        "A put succeeds only when this many distinct nodes confirmed their shards.",
        low=1,
        high=255,
    )
    segment_size: int = setting(
        1024 * 1024,
        "Bytes of plaintext per segment (each segment is encrypted and coded on its own).",
        low=64 * 1024,
        high=64 * 1024 * 1024,
    )
    manifest_version: int = setting(
        3,
        "Record format of new records: 3 hashes blocks with BLAKE3, 2 with BLAKE2b. Keep 2"
        " while any node of the network runs a release before version 3 (it cannot check"
        " BLAKE3 blocks, so it refuses them); both are always read.",
        low=2,
        high=3,
    )
    quota_bytes: int = setting(
        0,
        "Bytes of shard blocks this node accepts (0: only the disk limits it).",
        low=0,
        high=2**62,
    )
    repair_interval: float = setting(
        600.0,
        "Seconds between repair passes over the records this node holds.",
        low=1,
        high=7 * 86_400,
    )
    coordinator_deadline: float = setting(
        0.0,
        "Seconds a record may stay unhealthy (but repairable) before the next of its holders"
        " takes over repairing it from the one whose turn it was (a holder that is dead,"
        " buggy or compromised cannot keep it unrepaired). 0: three repair intervals.",
        low=0,
        high=30 * 86_400,
    )
    scrub_bytes: int = setting(
        64 * 1024 * 1024,
        "Bytes of held shard blocks read back and verified in each repair pass, resuming"
        " where the last pass stopped; a block found missing or corrupt is repaired"
        " (0: no scrub).",
        low=0,
        high=2**40,
    )
    audit_bytes: int = setting(
        16 * 1024 * 1024,
        "Bytes of blocks fetched in each repair pass to audit the holders of the records"
        " this node coordinates (one random block per claimed index; a holder that fails"
        " is not counted, its index is rebuilt elsewhere and it gets no shards for a day;"
        " 0: no background audits, `check` still audits).",
        low=0,
        high=2**40,
    )
    orphan_grace: float = setting(
        7 * 86_400.0,
        "Seconds after which an incomplete shard index of a record the ledger knows (a"
        " transfer to this node that was given up) is deleted, counted from its last block.",
        low=60,
        high=365 * 86_400,
    )
    unrecorded_grace: float = setting(
        3600.0,
        "Seconds after the last block of a record the ledger does not know arrived before"
        " its shards are deleted (an upload that never finished, or shards a member sent"
        " and never recorded); only while this node's ledger is caught up.",
        low=60,
        high=365 * 86_400,
    )
    pending_bytes_per_writer: int = setting(
        8 * 1024**3,
        "Bytes of shards one writer may keep on this node for records the ledger does not"
        " know yet (uploads in progress); beyond, its batches are refused. Must exceed the"
        " largest share of one record a writer sends one node: size / k per index.",
        low=1024 * 1024,
        high=2**62,
    )
    transfer_batch_bytes: int = setting(
        3 * 1024 * 1024,
        "Bytes of shard blocks sent to a holder per call (two calls in flight per holder: what"
        " a writer buffers for its slowest holder grows with it). Larger batches mean fewer"
        " messages, pack files and fsyncs per holder; must fit limits.max_message_bytes.",
        low=64 * 1024,
        high=3 * 1024 * 1024,
    )
    call_timeout: float = setting(
        30.0,
        "Seconds a holder may take to answer one transfer call before it counts as failed.",
        low=1,
        high=3600,
    )

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n <= 255:
            raise ValueError(f"need 1 <= k <= n <= 255, got k={self.k}, n={self.n}")
        if not self.k <= self.happy <= self.n:
            raise ValueError(f"need k <= happy <= n, got happy={self.happy}")
        if 0 < self.coordinator_deadline < self.repair_interval:
            raise ValueError(
                "need coordinator_deadline = 0 or >= repair_interval (a shorter one hands"
                f" repair on before the coordinator's pass), got {self.coordinator_deadline}"
                f" < {self.repair_interval}"
            )

    @property
    def repair_deadline(self) -> float:
        """Seconds before the next holder takes over an unrepaired record."""
        return self.coordinator_deadline or 3 * self.repair_interval
