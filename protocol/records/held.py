"""One round for a small record's get, sans-IO: what a FetchHeld answer may carry.

A get asked every candidate GetHoldings, waited, then asked k holders
FetchBlocks: two round trips. For a small record (one index's blocks at most
HELD_MAX_BYTES) a reader asks its first `held_asks` candidates FetchHeld
instead, and each holder answers with its indices and, under the reader's
permit, all blocks of one complete index (data indices first, which decode
without arithmetic). The reader verifies every block against the manifest as
for FetchBlocks and stops as soon as k distinct indices are whole.

Bounds: a holder reads and sends at most HELD_MAX_BYTES per request (what
one FetchBlocks may already ask), whatever it holds; a reader receives at
most `held_asks(k, n)` = min(n, k + 1) such answers, so at most one index's
blocks more than it needs (for a 1 MiB record with k=3, n=5: one block of ~350 KB).
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.records.messages import MAX_HELD_SEGMENTS

HELD_MAX_BYTES = 1024 * 1024 + 4096  # one index's blocks of a small record (1 MiB records)


def small(block_sizes: Sequence[int]) -> bool:
    """Whether one index of a record with these per-segment block sizes is served whole."""
    return 0 < len(block_sizes) <= MAX_HELD_SEGMENTS and sum(block_sizes) <= HELD_MAX_BYTES


def served_index(complete: Sequence[int], k: int) -> int | None:
    """Which of a holder's complete indices it serves whole: a data index if it has one
    (lowest first), else its lowest parity index; None when it holds none whole."""
    if not complete:
        return None
    data = [i for i in complete if i < k]
    return min(data) if data else min(complete)


def held_asks(k: int, n: int) -> int:
    """How many candidates a reader asks FetchHeld (the rest, if any, GetHoldings): one
    more than it needs, so one slow or lying holder costs no second round, while every
    further answer (a whole index it would decrypt and drop) is not asked for."""
    return min(n, k + 1)
