"""Backends under one contract: each gives a store factory and a way to rot a block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.store.disk import DiskShardStore
from storage.store.memory import MemoryShardStore
from storage.store.shard_store import ShardStore


@dataclass
class Backend:
    name: str
    make: Callable[[int | None], ShardStore]
    damage: Callable[[ShardStore, bytes, bytes], None]


def memory_backend() -> Backend:
    def damage(store: ShardStore, digest: bytes, content: bytes) -> None:
        assert isinstance(store, MemoryShardStore)
        store.damage(digest, content)

    return Backend("memory", MemoryShardStore, damage)


def disk_backend(root: Path) -> Backend:
    def damage(store: ShardStore, digest: bytes, content: bytes) -> None:
        assert isinstance(store, DiskShardStore)
        where = store.locate(digest)
        assert where is not None
        with open(where.path, "r+b") as handle:  # in place: a pack's neighbours stay intact
            handle.seek(where.offset)
            handle.write(content[: where.size])

    return Backend("disk", lambda capacity: DiskShardStore(root, capacity), damage)
