"""Content-addressed shard block store: the rules every backend shares.

A block is stored under its shard hash and checked against it on the way in
(a peer cannot plant a block under a false name) and on the way out (bit rot
is caught, the block quarantined and never served). A quota bounds what the
store accepts. Backends (disk, memory) only move bytes.

The store does not know which manifest version names a block, so a digest
is checked against every block hash in use, BLAKE3 first, then BLAKE2b
(`hashing.block_matches`; docs/records.md says why that is sound). Blocks
added without a digest get the current one, BLAKE3.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

from storage.codec.decoder import BlockSource
from storage.codec.erasure import BytesLike
from storage.codec.hashing import DIGEST_SIZE, block_matches, shard_hash_v3
from storage.codec.manifest import Manifest
from storage.errors import BlockMismatch, CorruptShard, ShardNotFound, StoreFull


def check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise ValueError(f"a shard digest is {DIGEST_SIZE} bytes")


class ShardStore(ABC):
    """Verified, quota-bounded block storage keyed by shard hash. Thread-safe."""

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None and (type(capacity) is not int or capacity < 0):
            raise ValueError(f"store capacity must be a non-negative integer, got {capacity!r}")
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        """Bytes held by live (not quarantined) blocks."""
        return self._used

    def put(self, digest: bytes, block: BytesLike) -> bool:
        """Store `block` durably; False when it was already present.

        Raises BlockMismatch if the block does not hash to `digest` (under
        BLAKE3 or BLAKE2b, whichever manifest version names it) and
        StoreFull when the quota or the disk has no room; nothing is stored then.
        """
        check_digest(digest)
        if not block_matches(digest, block):
            raise BlockMismatch(f"block does not hash to {digest.hex()}; refused")
        return self._store(digest, block)

    def add(self, block: BytesLike) -> bytes:
        """Store `block` under its own BLAKE3 hash (computed once) and return that hash.

        For blocks that come before their manifest: only a version 3 manifest names them.
        """
        digest = shard_hash_v3(block)
        self._store(digest, block)
        return digest

    def put_many(self, items: Sequence[tuple[bytes, BytesLike]]) -> list[bool]:
        """`put` for a batch: every block checked first (BlockMismatch stores none), then
        written together, so a backend pays its durability cost (fsyncs) once per batch
        where it can. Returns, per item, False when it was already present. On StoreFull
        or a disk error some blocks of the batch may be stored; none is acknowledged."""
        for digest, block in items:
            check_digest(digest)
            if not block_matches(digest, block):
                raise BlockMismatch(f"block does not hash to {digest.hex()}; refused")
        return self._store_many(items)

    def add_many(self, blocks: Sequence[BytesLike]) -> list[bytes]:
        """`add` for a batch (see `put_many`): the blocks' BLAKE3 hashes, in order."""
        digests = [shard_hash_v3(block) for block in blocks]
        self._store_many(list(zip(digests, blocks, strict=True)))
        return digests

    def _store(self, digest: bytes, block: BytesLike) -> bool:
        return self._store_many([(digest, block)])[0]

    def _store_many(self, items: Sequence[tuple[bytes, BytesLike]]) -> list[bool]:
        """Charge the quota for the new blocks, write them, refund what was not written."""
        created = [False] * len(items)
        todo: list[int] = []
        charged = 0
        with self._lock:
            seen: set[bytes] = set()
            for at, (digest, block) in enumerate(items):
                if digest in seen or self._exists(digest):
                    continue
                size = memoryview(block).nbytes
                if self.capacity is not None and self._used + charged + size > self.capacity:
                    raise StoreFull(
                        f"store full: {self._used + charged} of {self.capacity} bytes used,"
                        f" a {size}-byte block does not fit"
                    )
                seen.add(digest)
                todo.append(at)
                charged += size
            self._used += charged
        try:
            self._write_many([items[at] for at in todo], created, todo)
        finally:
            refund = sum(memoryview(items[at][1]).nbytes for at in todo if not created[at])
            if refund:
                with self._lock:
                    self._used -= refund
        return created

    def _write_many(
        self, items: Sequence[tuple[bytes, BytesLike]], created: list[bool], slots: list[int]
    ) -> None:
        """Durably store `items`, setting created[slots[i]] for each one written (so a
        failure part-way keeps the quota of what did land). One by one unless overridden."""
        for (digest, block), slot in zip(items, slots, strict=True):
            created[slot] = self._write(digest, block)

    def get(self, digest: bytes) -> bytes:
        """The block stored under `digest`, verified.

        Raises ShardNotFound, or CorruptShard after moving a bad block aside.
        """
        check_digest(digest)
        block = self._read(digest)
        if not block_matches(digest, block):
            self._move_to_quarantine(digest)
            raise CorruptShard(digest)
        return block

    def get_cached(self, digest: bytes) -> bytes | None:
        """The block stored under `digest`, verified, if reading it waits for no disk
        (all of it in the page cache); None otherwise, and whenever `get` would have more
        to decide (missing, moved, corrupt). For an event loop's caller, which then calls
        `get` in a worker thread: no quarantine or other write happens here."""
        check_digest(digest)
        block = self._read_cached(digest)
        if block is None or not block_matches(digest, block):
            return None
        return block

    def _read_cached(self, digest: bytes) -> bytes | None:
        """`_read` if it never waits for a disk, else None (a store in memory never does)."""
        try:
            return self._read(digest)
        except ShardNotFound:
            return None

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, bytes) and len(digest) == DIGEST_SIZE and self._exists(digest)

    def delete(self, digest: bytes) -> bool:
        """Remove a block; False when it was not there."""
        check_digest(digest)
        size = self._remove(digest)
        if size is None:
            return False
        with self._lock:
            self._used -= size
        return True

    def delete_many(self, digests: Sequence[bytes]) -> int:
        """Remove blocks (a record's, an index's); how many were there. A backend removes
        them together where it can (one index transaction, each pack settled once)."""
        for digest in digests:
            check_digest(digest)
        unique = list(dict.fromkeys(digests))
        sizes = [size for size in self._remove_many(unique) if size is not None]
        if sizes:
            self._lost(sum(sizes))
        return len(sizes)

    def _remove_many(self, digests: Sequence[bytes]) -> list[int | None]:
        """`_remove` of each (distinct) digest, in order, unless overridden."""
        return [self._remove(digest) for digest in digests]

    def scrub(self) -> list[bytes]:
        """Verify every block; quarantine and return the digests of corrupt ones."""
        corrupt = []
        for digest in self.digests():
            try:
                self.get(digest)
            except CorruptShard:
                corrupt.append(digest)
            except ShardNotFound:
                continue  # deleted meanwhile
        return corrupt

    def _move_to_quarantine(self, digest: bytes) -> None:
        size = self._quarantine(digest)
        if size is not None:
            self._lost(size)

    def _account_existing(self, size: int) -> None:
        with self._lock:
            self._used += size

    def _lost(self, size: int) -> None:
        """Blocks of `size` bytes left the store (deleted together, quarantined, or their
        file vanished)."""
        with self._lock:
            self._used -= size

    def close(self) -> None:
        """Release what the backend holds open (nothing by default)."""
        return None

    def make_spares(self) -> int:
        """Prepare what the next writes need ahead of them, off their path (the disk
        store's empty pack files); how many were made. Nothing by default."""
        return 0

    @abstractmethod
    def digests(self) -> list[bytes]:
        """Digests of all live blocks, sorted."""

    @abstractmethod
    def quarantined(self) -> list[bytes]:
        """Digests of blocks found corrupt and set aside, sorted."""

    @abstractmethod
    def _exists(self, digest: bytes) -> bool: ...

    @abstractmethod
    def _write(self, digest: bytes, block: BytesLike) -> bool:
        """Durably store; False if another writer stored it first."""

    @abstractmethod
    def _read(self, digest: bytes) -> bytes:
        """Raw bytes of the block; ShardNotFound when absent."""

    @abstractmethod
    def _remove(self, digest: bytes) -> int | None:
        """Delete; the removed size, or None when absent."""

    @abstractmethod
    def _quarantine(self, digest: bytes) -> int | None:
        """Set the block aside; the bytes it counted, or None if it was already gone."""


def store_source(store: ShardStore, manifest: Manifest) -> BlockSource:
    """A block source reading one local shard store by content address."""

    def get(segment: int, index: int) -> BytesLike | None:
        # A corrupt block raises CorruptShard (already quarantined by the store).
        try:
            return store.get(manifest.block_hash(segment, index))
        except ShardNotFound:
            return None

    return get
