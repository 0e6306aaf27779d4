"""Decoded manifests of the records this node holds shards of, kept in memory.

Every batch stored, block read and proof checks blocks against a record's
manifest: decoding it from holdings each time would cost more than the work
itself. The cache is bounded by weight, not count, because a member can send
huge manifests. Worker threads store and delete too, hence the lock.
"""

from __future__ import annotations

import collections
import threading

from storage.codec.manifest import Manifest
from storage.store.holdings import Holdings

MANIFEST_CACHE_BYTES = 32 * 1024 * 1024  # decoded manifests kept in memory, by weight


class ManifestCache:
    def __init__(self, holdings: Holdings) -> None:
        self.holdings = holdings
        # Most recently used last, at most MANIFEST_CACHE_BYTES of block hashes.
        self._manifests: collections.OrderedDict[bytes, Manifest] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, record_id: bytes) -> Manifest | None:
        """The manifest of a record this node holds shards of."""
        with self._lock:
            cached = self._manifests.get(record_id)
            if cached is not None:
                self._manifests.move_to_end(record_id)
                return cached
        raw = self.holdings.manifest(record_id)
        if raw is None:
            return None
        manifest = Manifest.decode(raw)
        self.keep(manifest)
        return manifest

    def keep(self, manifest: Manifest) -> None:
        with self._lock:
            self._drop(manifest.record_id)
            self._manifests[manifest.record_id] = manifest
            self._bytes += _weight(manifest)
            while self._bytes > MANIFEST_CACHE_BYTES and len(self._manifests) > 1:
                _, dropped = self._manifests.popitem(last=False)
                self._bytes -= _weight(dropped)

    def forget(self, record_id: bytes) -> None:
        with self._lock:
            self._drop(record_id)

    def _drop(self, record_id: bytes) -> None:
        dropped = self._manifests.pop(record_id, None)
        if dropped is not None:
            self._bytes -= _weight(dropped)


def _weight(manifest: Manifest) -> int:
    """About what a decoded manifest holds: its block hashes and sealed metadata."""
    return 32 * manifest.n * manifest.segment_count + len(manifest.sealed_metadata) + 256
