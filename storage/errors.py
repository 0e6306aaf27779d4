"""Errors of the storage layer: each names what failed, so operators can act."""

from __future__ import annotations

from collections.abc import Sequence


class StorageError(Exception):
    """Base of every error this package raises on purpose."""


class ManifestError(StorageError, ValueError):
    """A manifest is malformed, oversized, or inconsistent."""


class DecryptionError(StorageError):
    """Ciphertext failed authentication: wrong key, tampering, or misplacement."""


class KeyFormatError(StorageError, ValueError):
    """A key has the wrong length or is not a valid curve point."""


class NotEnoughShards(StorageError):
    """Fewer than k verified shards of a segment could be obtained."""

    def __init__(
        self,
        segment: int,
        k: int,
        good: Sequence[int],
        corrupt: Sequence[int],
        missing: Sequence[int],
    ) -> None:
        self.segment = segment
        self.k = k
        self.good = tuple(good)
        self.corrupt = tuple(corrupt)
        self.missing = tuple(missing)
        super().__init__(
            f"segment {segment}: {len(self.good)} good shards, need {k}"
            f" (corrupt shard indices: {list(self.corrupt) or 'none'};"
            f" missing shard indices: {list(self.missing) or 'none'})"
        )


class ShardNotFound(StorageError, KeyError):
    """The store holds no block with this digest."""

    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        super().__init__(f"no shard block {digest.hex()} in this store")

    def __str__(self) -> str:
        return str(self.args[0])


class CorruptShard(StorageError):
    """A stored block no longer matches its digest; it was quarantined."""

    def __init__(self, digest: bytes, detail: str = "content does not match its digest") -> None:
        self.digest = digest
        super().__init__(f"shard block {digest.hex()} is corrupt ({detail}); quarantined")


class BlockMismatch(StorageError, ValueError):
    """A block offered for storage does not hash to the digest it claims."""


class StoreFull(StorageError):
    """The store's quota or the disk itself has no room for the block."""
