"""A patient's wallet scans a ledger's grants with her view key, on one core.

    python -m benchmarks.wallet_scan [--grants 100000] [--hers 20] [--real-decoys 1000]
                                     [--repeat 3] [--seed 1] [--json]

Builds `--grants` encoded stealth grants (seeded; each with a 32-byte record
id as its context), of which `--hers` are real grants to the patient and
`--real-decoys` real grants to 50 other people. The rest are the grants of
everyone else as a scanner sees them: a genuine X25519 ephemeral key and
uniformly random tag, one-time key and sealed key (the construction's claim is
that grants to others look exactly like that; making them real would cost
0.3 ms each and change nothing the scanner does). The process is pinned to one
CPU. It times, as the median of `--repeat` runs: decoding the bytes and
scanning (`scan`: one X25519 and one 1-byte BLAKE2b per grant, the one-time key
check only after a view-tag match), then opening her grants with the full key.
The issue's target is 100,000 grants in under 10 s on one core.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from typing import Any

import nacl.bindings as sodium

from benchmarks.harness import emit_json, parser, print_table
from protocol.privacy import PersonKey, StealthGrant, make_grant, open_grant, scan
from protocol.privacy.grant import GRANT_VERSION, SEALED_SIZE

CONTEXT_SIZE = 32
Ledger = list[tuple[bytes, bytes]]  # (encoded grant, context)


def build(
    grants: int, hers: int, real_decoys: int, seed: int
) -> tuple[PersonKey, Ledger, set[int]]:
    """The patient, the (encoded grant, context) list, and the positions of her grants."""
    rng = random.Random(seed)
    patient = PersonKey(rng.randbytes(32))
    others = [PersonKey(rng.randbytes(32)) for _ in range(50)]
    mine = set(rng.sample(range(grants), hers))
    real = set(rng.sample(sorted(set(range(grants)) - mine), min(real_decoys, grants - hers)))
    ledger = []
    for position in range(grants):
        context = rng.randbytes(CONTEXT_SIZE)
        if position in mine or position in real:
            who = patient if position in mine else rng.choice(others)
            grant = make_grant(who.address, rng.randbytes(32), rng.randbytes(32), context)
            raw = grant.to_bytes()
        else:
            ephemeral = sodium.crypto_scalarmult_base(rng.randbytes(32))
            tail = rng.randbytes(1 + 32 + SEALED_SIZE)
            raw = bytes([GRANT_VERSION]) + ephemeral + tail
        ledger.append((raw, context))
    return patient, ledger, mine


def scan_ledger(patient: PersonKey, ledger: Ledger) -> list[int]:
    """Decode every grant and scan: the wallet's pass over a ledger."""
    decoded = ((StealthGrant.from_bytes(raw), context) for raw, context in ledger)
    return [position for position, _ in scan(patient.view, decoded)]


def open_all(patient: PersonKey, ledger: Ledger, found: list[int]) -> int:
    for position in found:
        raw, context = ledger[position]
        open_grant(patient, StealthGrant.from_bytes(raw), context)
    return len(found)


def pin_to_one_cpu() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    return "not pinned"


def run(grants: int, hers: int, real_decoys: int, repeat: int, seed: int) -> dict[str, Any]:
    pinned = pin_to_one_cpu()
    started = time.perf_counter()
    patient, ledger, mine = build(grants, hers, real_decoys, seed)
    built = time.perf_counter() - started
    scans, found = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        found = scan_ledger(patient, ledger)
        scans.append(time.perf_counter() - started)
    if set(found) != mine:
        raise SystemExit(f"the scan found {len(found)} grants, not her {len(mine)}")
    started = time.perf_counter()
    opened = open_all(patient, ledger, found)
    open_s = time.perf_counter() - started
    scan_s = statistics.median(scans)
    return {
        "grants": grants,
        "hers_found": len(found),
        "opened": opened,
        "scan_seconds": round(scan_s, 3),
        "grants_per_s": round(grants / scan_s),
        "us_per_grant": round(scan_s / grants * 1e6, 2),
        "open_ms_per_grant": round(open_s / max(opened, 1) * 1000, 3),
        "build_seconds": round(built, 1),
        "pinned": pinned,
        "target_met": scan_s < 10.0 * grants / 100_000,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--grants", type=int, default=100_000)
    p.add_argument("--hers", type=int, default=20)
    p.add_argument("--real-decoys", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    if not 0 < args.hers <= args.grants:
        p.error("--hers must be between 1 and --grants")
    figures = run(args.grants, args.hers, args.real_decoys, args.repeat, args.seed)
    print(f"built {args.grants:,} grants in {figures['build_seconds']} s ({figures['pinned']})")
    headers = ["grants", "hers found", "scan s", "grants/s", "us/grant", "open ms/grant"]
    keys = ["grants", "hers_found", "scan_seconds", "grants_per_s", "us_per_grant",
            "open_ms_per_grant"]  # fmt: skip
    print_table(headers, [[figures[k] for k in keys]])
    print(
        f"target (100k grants under 10 s, one core): {'met' if figures['target_met'] else 'MISSED'}"
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
