"""A member timing a deletion cannot make a holder drop a block an honest batch just noted.

The race (found in review): record A (a member's copy of a block) is deleted
while record B's batch finds that block "already held" and notes it. The
delete computed the block free before B noted it; it must not remove it after.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from node.records.block_refs import BlockRefs
from storage.codec.hashing import shard_hash_v3
from storage.store.holdings import Holdings
from storage.store.memory import MemoryShardStore

A, B = b"a" * 32, b"b" * 32
BLOCK = b"shared ciphertext" * 100


def setting(tmp_path: Path) -> tuple[MemoryShardStore, Holdings, BlockRefs, bytes]:
    store, holdings = MemoryShardStore(), Holdings(tmp_path / "holdings.sqlite")
    digest = store.add(BLOCK)
    holdings.arrived(A, None, 0, 1, uploader=None, blocks=[(digest, len(BLOCK))])
    return store, holdings, BlockRefs(store, holdings), digest


def test_a_free_waits_for_a_batch_between_its_store_and_its_note(tmp_path: Path) -> None:
    store, holdings, refs, digest = setting(tmp_path)
    stored, freed = threading.Event(), threading.Event()
    deleted: list[int] = []

    def batch_of_b() -> None:
        with refs.noting():
            assert store.put_many([(digest, BLOCK)]) == [False]  # already held: not written
            stored.set()
            assert not freed.wait(timeout=0.2)  # the free cannot run inside this section
            holdings.arrived(B, None, 0, 2, uploader=None, blocks=[(digest, len(BLOCK))])

    def delete_a() -> None:
        stored.wait()
        free = holdings.remove(A)  # computed before B noted it: the block looks free
        assert free == [digest]
        deleted.append(refs.free(free))
        freed.set()

    threads = [threading.Thread(target=batch_of_b), threading.Thread(target=delete_a)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert freed.is_set() and deleted == [0]
    assert digest in store  # B's note was seen: the block stays
    assert store.get(digest) == BLOCK
    assert holdings.first_noted([digest]) == {digest: B}


def test_a_free_deletes_what_nobody_references_and_batches_wait_behind_it(
    tmp_path: Path,
) -> None:
    store, holdings, refs, digest = setting(tmp_path)
    assert refs.free(holdings.remove(A)) == 1
    assert digest not in store and store.used_bytes == 0
    assert refs.free([]) == 0
    with refs.noting():  # a batch after the free stores the block afresh
        assert store.put_many([(digest, BLOCK)]) == [True]
    assert shard_hash_v3(store.get(digest)) == digest


class Watched(threading.Condition):
    """A condition that says when a thread starts waiting on it (or `note`s it is done).
    Shared with tests/node/test_unnoted_sweep.py."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = threading.Semaphore(0)

    def note(self) -> None:
        self.waits.release()

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.release()
        return super().wait(timeout)

    def until_waiting(self) -> None:
        """Return once one more thread waits (its lock released: taking it proves it)."""
        assert self.waits.acquire(timeout=60)
        with self:
            pass


class GatedStore(MemoryShardStore):
    """The first delete_many waits for `gate`; every one is logged in `order`."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.gate, self.inside, self.order, self.first = (
            threading.Event(),
            threading.Event(),
            order,
            True,
        )

    def delete_many(self, digests: Sequence[bytes]) -> int:
        first, self.first = self.first, False
        if first:
            self.inside.set()
            assert self.gate.wait(timeout=60)
        else:
            self.order.append("free")
        return super().delete_many(digests)


def test_frees_one_after_another_do_not_hold_a_batch_back_for_ever(tmp_path: Path) -> None:
    """A member can keep a free waiting at every moment (drops and deletions of tiny
    records of its own): a batch that waited behind one free goes before the next."""
    order: list[str] = []
    store, holdings = GatedStore(order), Holdings(tmp_path / "holdings.sqlite")
    refs = BlockRefs(store, holdings)
    changed = refs._changed = Watched()
    first, second = store.add(b"first" * 100), store.add(b"second" * 100)

    def batch() -> None:
        with refs.noting():
            order.append("batch")

    threads = [threading.Thread(target=refs.free, args=([first],))]
    threads[0].start()
    assert store.inside.wait(timeout=60)  # the first free holds the guard
    threads.append(threading.Thread(target=batch))
    threads[-1].start()
    changed.until_waiting()  # the batch waits behind it
    threads.append(threading.Thread(target=refs.free, args=([second],)))
    threads[-1].start()
    changed.until_waiting()  # and so does the next free
    store.gate.set()
    for thread in threads:
        thread.join(timeout=60)
    assert order == ["batch", "free"]
    assert first not in store and second not in store
