"""Noting a block against freeing it: a delete never removes a block a batch just noted.

Blocks are content-addressed and shared: a batch whose block is already
held (another record, a member's copy of it) stores nothing and notes the
block for its own record. A record's deletion frees the blocks no record
references any more. Without a guard, a member could time a tombstone so a
holder computed a block free, an honest batch then found it "already held"
and noted it, and the delete removed it: the honest record's index claimed a
block the disk no longer had. Storing-and-noting is shared (batches run
side by side); freeing is exclusive, and re-checks the references first.
Freeing waits for the batches in progress and holds new ones back (deletes
are rare and short); the batches a free held back go before the next free, so
frees one after another (a member can keep one waiting at every moment) never
hold a batch back for more than one free, nor batches a free for more than
the batches in progress and those it found held back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from storage.store.holdings import Holdings
from storage.store.shard_store import ShardStore


class BlockRefs:
    def __init__(self, store: ShardStore, holdings: Holdings) -> None:
        self.store = store
        self.holdings = holdings
        self._changed = threading.Condition()
        self._noting = 0  # batches between their store and their holdings note
        self._freeing = False
        self._waiting = 0  # frees waiting: new batches wait behind them
        self._held = 0  # batches waiting behind a free
        self._turn = False  # the batches the last free held back go before the next free

    @contextmanager
    def noting(self) -> Iterator[None]:
        """Around storing a batch's blocks and noting them in holdings (worker threads)."""
        with self._changed:
            if self._freeing or self._waiting:
                self._held += 1
                while self._freeing or (self._waiting and not self._turn):
                    self._changed.wait()
                self._held -= 1
                if not self._held and self._turn:
                    self._turn = False  # every batch held back is in: the next free's turn
                    self._changed.notify_all()
            self._noting += 1
        try:
            yield
        finally:
            with self._changed:
                self._noting -= 1
                self._changed.notify_all()

    def free(self, digests: Sequence[bytes]) -> int:
        """Delete the blocks of `digests` that no record references now; how many were
        deleted. Never inside `noting` (it would wait for itself)."""
        if not digests:
            return 0
        with self._changed:
            self._waiting += 1
            while self._freeing or self._noting or self._turn:
                self._changed.wait()
            self._waiting -= 1
            self._freeing = True
        try:
            still = self.holdings.first_noted(digests)
            return self.store.delete_many([d for d in digests if d not in still])
        finally:
            with self._changed:
                self._freeing = False
                self._turn = self._held > 0
                self._changed.notify_all()
