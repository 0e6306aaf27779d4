"""Block hash throughput: BLAKE2b (manifest versions 1-2) against BLAKE3 (version 3).

    python -m benchmarks.hashing [--mib 64] [--repeat 7] [--json]

Hashes --mib of random blocks of 1 MiB and 256 KiB (the default segment of
1 MiB cut in k=4) the way the codec does: memory views of one buffer, no
copies, the domain-separated functions of storage.codec.hashing. Prints the
median MB/s of --repeat runs per function and block size and the ratio
BLAKE3/BLAKE2b; then the same on two threads (both functions release the
GIL, so this shows what two segment workers get), and what a holder's
manifest-free check costs per block of each version (a version 2 block is
tried under BLAKE3 first). One run on a shared machine: read the ratios.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.harness import MIB, emit_json, median_seconds, parser, print_table, seeded_bytes
from storage.codec.hashing import Hasher, block_matches, shard_hash, shard_hash_v3

BLOCK_SIZES = (MIB, 256 * 1024)
FUNCTIONS: dict[str, Hasher] = {"blake2b": shard_hash, "blake3": shard_hash_v3}


def blocks_of(buffer: bytes, size: int) -> list[memoryview]:
    view = memoryview(buffer)
    return [view[start : start + size] for start in range(0, len(view) - size + 1, size)]


def on_threads(work: Callable[[Sequence[memoryview]], object], blocks: list[memoryview]) -> None:
    halves = (blocks[0::2], blocks[1::2])
    threads = [threading.Thread(target=work, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--mib", type=float, default=64, help="bytes hashed per run, in MiB")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median)")
    args = p.parse_args()
    buffer = seeded_bytes(int(args.mib * MIB), args.seed)
    figures: dict[str, Any] = {}
    rows = []
    for size in BLOCK_SIZES:
        blocks = blocks_of(buffer, size)
        total = len(blocks) * size / 1e6
        row: list[Any] = [f"{size // 1024} KiB"]
        for name, fn in FUNCTIONS.items():

            def one(blocks: Sequence[memoryview] = blocks, fn: Hasher = fn) -> None:
                for block in blocks:
                    fn(block)

            single = total / median_seconds(one, args.repeat)
            double = total / median_seconds(functools.partial(on_threads, one, blocks), args.repeat)
            figures[f"{name}_{size // 1024}k_mbps"] = round(single, 1)
            figures[f"{name}_{size // 1024}k_2threads_mbps"] = round(double, 1)
            row += [single, double]
        ratio = figures[f"blake3_{size // 1024}k_mbps"] / figures[f"blake2b_{size // 1024}k_mbps"]
        figures[f"ratio_{size // 1024}k"] = round(ratio, 2)
        rows.append([*row, ratio])
        for name, fn in FUNCTIONS.items():
            digests = [fn(b) for b in blocks]

            def check(digests: list[bytes] = digests, blocks: list[memoryview] = blocks) -> None:
                for digest, block in zip(digests, blocks, strict=True):
                    block_matches(digest, block)

            figures[f"holder_check_{name}_{size // 1024}k_mbps"] = round(
                total / median_seconds(check, args.repeat), 1
            )
    print(f"{args.mib:g} MiB per run, median of {args.repeat} runs, MB/s")
    print_table(
        ["block", "BLAKE2b", "BLAKE2b 2 thr", "BLAKE3", "BLAKE3 2 thr", "BLAKE3/BLAKE2b"], rows
    )
    print()
    print("holder check without the manifest (BLAKE3 tried first), MB/s")
    print_table(
        ["block", "v3 block", "v1/v2 block"],
        [
            [
                f"{size // 1024} KiB",
                figures[f"holder_check_blake3_{size // 1024}k_mbps"],
                figures[f"holder_check_blake2b_{size // 1024}k_mbps"],
            ]
            for size in BLOCK_SIZES
        ],
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
