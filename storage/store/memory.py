"""In-memory shard store for tests and simulations; same contract as the disk one."""

from __future__ import annotations

from storage.codec.erasure import BytesLike
from storage.errors import ShardNotFound
from storage.store.shard_store import ShardStore, check_digest


class MemoryShardStore(ShardStore):
    def __init__(self, capacity: int | None = None) -> None:
        super().__init__(capacity)
        self._blocks: dict[bytes, bytes] = {}
        self._set_aside: dict[bytes, bytes] = {}

    def digests(self) -> list[bytes]:
        with self._lock:
            return sorted(self._blocks)

    def quarantined(self) -> list[bytes]:
        with self._lock:
            return sorted(self._set_aside)

    def damage(self, digest: bytes, content: bytes) -> None:
        """Overwrite a stored block without checks: simulated bit rot."""
        check_digest(digest)
        with self._lock:
            if digest not in self._blocks:
                raise ShardNotFound(digest)
            self._blocks[digest] = bytes(content)

    def _exists(self, digest: bytes) -> bool:
        return digest in self._blocks

    def _write(self, digest: bytes, block: BytesLike) -> bool:
        with self._lock:
            if digest in self._blocks:
                return False
            self._blocks[digest] = bytes(block)
            return True

    def _read(self, digest: bytes) -> bytes:
        try:
            return self._blocks[digest]
        except KeyError:
            raise ShardNotFound(digest) from None

    def _remove(self, digest: bytes) -> int | None:
        with self._lock:
            block = self._blocks.pop(digest, None)
        return None if block is None else len(block)

    def _quarantine(self, digest: bytes) -> int | None:
        with self._lock:
            block = self._blocks.pop(digest, None)
            if block is None:
                return None
            self._set_aside[digest] = block
            return len(block)
