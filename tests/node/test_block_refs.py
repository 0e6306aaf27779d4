"""A member timing a deletion cannot make a holder drop a block an honest batch just noted.

The race (found in review): record A (a member's copy of a block) is deleted
while record B's batch finds that block "already held" and notes it. The
delete computed the block free before B noted it; it must not remove it after.
"""

from __future__ import annotations

import threading
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
