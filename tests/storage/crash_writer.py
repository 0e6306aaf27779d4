"""Child process for the crash test: writes blocks until killed.

Prints each block's digest only after `put` returned (an acknowledged write).
With --stall-at N, the N-th write stops half-way through its temp file and
waits to be killed, so the test controls exactly where the crash lands.
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


def stall_halfway(real_write: Callable[[int, memoryview], int]) -> Callable[[int, memoryview], int]:
    """A write that writes half its data, reports, then waits for SIGKILL."""

    def write(fd: int, data: memoryview) -> int:
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
    args = parser.parse_args()
    store = DiskShardStore(args.root)
    for index in range(MAX_BLOCKS):
        if index == args.stall_at:
            os.write = stall_halfway(os.write)  # type: ignore[assignment]
        data = make_block(args.seed, index)
        store.put(shard_hash(data), data)
        print(shard_hash(data).hex(), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
