"""Child process for the crash test: writes blocks until killed.

Prints each block's digest only after `put` returned (an acknowledged write).
With --stall-at N, the N-th write stops half-way through its block's bytes in
the pack file and waits to be killed, so the test controls exactly where the
crash lands.
With --batch B, blocks go B at a time through `put_many`, acknowledged together.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
from collections.abc import Callable

from storage.codec.hashing import shard_hash
from storage.store.disk import DiskShardStore

MAX_BLOCKS = 2000  # stops by itself even if nobody kills it


def make_block(seed: int, index: int) -> bytes:
    size = 64 * 1024 + (index * 7919) % (3 * 1024 * 1024)
    stem = hashlib.blake2b(f"{seed}/{index}".encode()).digest()
    return (stem * (size // len(stem) + 1))[:size]


BLOCK_WRITE = 4096  # blocks here are larger; a pack's magic and trailer are smaller


def stall_halfway(real_write: Callable[[int, memoryview], int]) -> Callable[[int, memoryview], int]:
    """A write of block bytes that writes half its data, reports, then waits for SIGKILL."""

    def write(fd: int, data: memoryview) -> int:
        if len(data) < BLOCK_WRITE:
            return real_write(fd, data)
        written = real_write(fd, data[: len(data) // 2])
        print("stalled", flush=True)
        signal.pause()
        return written

    return write


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stall-at", type=int, default=-1)
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args()
    store = DiskShardStore(args.root)
    if args.batch:
        write_batches(store, args.seed, args.batch, args.stall_at)
    for index in range(MAX_BLOCKS):
        if index == args.stall_at:
            os.write = stall_halfway(os.write)  # type: ignore[assignment]
        data = make_block(args.seed, index)
        store.put(shard_hash(data), data)
        print(shard_hash(data).hex(), flush=True)
    sys.exit(0)


def write_batches(store: DiskShardStore, seed: int, size: int, stall_at: int) -> None:
    """Batches of `size` blocks; the write of block `stall_at` stalls half-way."""
    real_write = os.write
    written = 0

    def counting(fd: int, data: memoryview) -> int:
        nonlocal written
        if len(data) < BLOCK_WRITE:  # a pack's magic or trailer
            return real_write(fd, data)
        if written == stall_at:
            return stall_halfway(real_write)(fd, data)
        written += 1  # one os.write per block (each fits in one call here)
        return real_write(fd, data)

    os.write = counting  # type: ignore[assignment]
    for first in range(0, MAX_BLOCKS, size):
        blocks = [make_block(seed, index) for index in range(first, first + size)]
        store.put_many([(shard_hash(data), data) for data in blocks])
        for data in blocks:
            print(shard_hash(data).hex(), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
