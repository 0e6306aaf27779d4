"""What padding records to their Padmé size costs in stored bytes, and what it hides.

    python -m benchmarks.padding [--max-mib 64] [--samples 100000] [-k 4 -n 8]
                                 [--segment-size B] [--seed 1] [--json]

Encodes one record of each size in a range (powers of ten and the Padmé worst
cases 2^e + 1, up to --max-mib) through the real RecordEncoder twice, in the
old unpadded format (manifest version 1) and the padded one (version 2), and
counts the bytes stored: every shard block of every segment, plus the encoded
manifest (whose sealed part is padded to at least 256 bytes, a fixed cost that
dominates tiny records). Then, without encoding, it draws --samples sizes log-uniformly from
1 B to 1 GiB and reports the mean and largest overhead of the padded
plaintext, and how many distinct sizes a member can tell apart among all the
sizes of 1 B to 1 MiB (the leak: bits of log2 of that count, 20 unpadded).
"""

from __future__ import annotations

import io
import math
import random
import statistics
from typing import Any

from benchmarks.harness import MIB, emit_json, parser, print_table, seeded_bytes
from storage.codec.encoder import DEFAULT_K, DEFAULT_N, DEFAULT_SEGMENT_SIZE, RecordEncoder
from storage.codec.manifest import LEGACY_VERSION, PADDED_VERSION, Manifest
from storage.codec.padme import padme


def stored(size: int, version: int, *, k: int, n: int, segment_size: int, seed: int) -> Manifest:
    encoder = RecordEncoder(
        record_id=seeded_bytes(32, seed),
        record_key=seeded_bytes(32, seed + 1),
        k=k,
        n=n,
        segment_size=segment_size,
        version=version,
    )
    for _ in encoder.encode(io.BytesIO(seeded_bytes(size, seed + 2))):
        pass
    return encoder.manifest()


def sizes_up_to(limit: int) -> list[int]:
    chosen = {1, 100, 129}  # 129 -> 144 is the largest relative step
    chosen |= {10**e for e in range(3, 10) if 10**e <= limit}
    chosen |= {2**e + 1 for e in (12, 16, 20, 24, 28) if 2**e + 1 <= limit}
    return sorted(chosen)


def measure(max_bytes: int, k: int, n: int, segment_size: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes_up_to(max_bytes):
        shape = {"k": k, "n": n, "segment_size": segment_size, "seed": seed}
        old = stored(size, LEGACY_VERSION, **shape)
        new = stored(size, PADDED_VERSION, **shape)
        old_total = old.stored_bytes + len(old.encode())
        new_total = new.stored_bytes + len(new.encode())
        rows.append(
            {
                "size": size,
                "padded": new.size,
                "plain_overhead_pct": round(100 * (new.size - size) / size, 2),
                "blocks_v1": old.stored_bytes,
                "blocks_v2": new.stored_bytes,
                "manifest_v1": len(old.encode()),
                "manifest_v2": len(new.encode()),
                "stored_v1": old_total,
                "stored_v2": new_total,
                "stored_overhead_pct": round(100 * (new_total - old_total) / old_total, 2),
            }
        )
    return rows


def sampled(samples: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    top = math.log(2**30)
    overheads = []
    for _ in range(samples):
        size = max(1, int(math.exp(rng.uniform(0, top))))
        overheads.append((padme(size) - size) / size)
    distinct = len({padme(size) for size in range(1, MIB + 1)})
    return {
        "sampled_mean_overhead_pct": round(100 * statistics.fmean(overheads), 2),
        "sampled_max_overhead_pct": round(100 * max(overheads), 2),
        "distinct_sizes_to_1mib": distinct,
        "bits_leaked_to_1mib": round(math.log2(distinct), 1),
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--max-mib", type=float, default=64)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("-k", type=int, default=DEFAULT_K)
    p.add_argument("-n", type=int, default=DEFAULT_N)
    p.add_argument("--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE)
    args = p.parse_args()
    rows = measure(int(args.max_mib * MIB), args.k, args.n, args.segment_size, args.seed)
    print(
        f"Bytes stored per record (all blocks, k={args.k} n={args.n}, {args.segment_size} B"
        " segments, plus the manifest): unpadded version 1 against padded version 2"
    )
    columns = ["size", "padded", "plain_overhead_pct", "blocks_v1", "blocks_v2"]
    columns += ["manifest_v1", "manifest_v2", "stored_v1", "stored_v2", "stored_overhead_pct"]
    headers = ["record B", "padded B", "pad %", "blocks v1", "blocks v2"]
    headers += ["manifest v1", "manifest v2", "stored v1", "stored v2", "stored +%"]
    print_table(
        headers,
        [[r[c] for c in columns] for r in rows],
    )
    figures: dict[str, Any] = {"records": rows, **sampled(args.samples, args.seed)}
    print(
        f"{args.samples} sizes log-uniform in 1 B..1 GiB: padding adds"
        f" {figures['sampled_mean_overhead_pct']}% on average,"
        f" at most {figures['sampled_max_overhead_pct']}%; the sizes 1 B..1 MiB fall into"
        f" {figures['distinct_sizes_to_1mib']} padded sizes"
        f" ({figures['bits_leaked_to_1mib']} bits instead of 20)"
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
