"""One round for a small record's get, sans-IO: what a FetchHeld answer may carry.

A get asked every candidate GetHoldings, waited, then asked k holders
FetchBlocks: two round trips. For a small record (one index's blocks at most
HELD_MAX_BYTES) a reader asks its first `held_asks` candidates FetchHeld
instead, and each holder answers with its indices and, under the reader's
permit, all blocks of one complete index (data indices first, which decode
without arithmetic). The reader verifies every block against the manifest as
for FetchBlocks and stops as soon as k distinct indices are whole. It asks k
candidates at once and a spare only when one of them fails or is late
(`spare_delay`): on a machine where holders and reader share the cores, the
spare's answer (read, sealed, sent, opened, then dropped) cost every get more
than the rare late holder saved.

Bounds: a holder reads and sends at most HELD_MAX_BYTES per request (what
one FetchBlocks may already ask), whatever it holds; a reader receives at
most `held_asks(k, n)` = min(n, k + 1) such answers, so at most one index's
blocks more than it needs (for a 1 MiB record with k=3, n=5: one block of ~350 KB),
and that only when an ask failed or was late.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.records.messages import MAX_HELD_SEGMENTS

HELD_MAX_BYTES = 1024 * 1024 + 4096  # one index's blocks of a small record (1 MiB records)
SPARE_FLOOR = 0.002  # seconds: the least a reader waits for its last index before the spare


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
    """How many candidates a reader asks FetchHeld at most (the rest, if any, GetHoldings):
    the k it needs (`first_asks`) and one spare, asked only when one of those fails or is
    late (`spare_delay`), so a slow or lying holder costs no GetHoldings round, while a get
    whose first k answer promptly moves no answer it would drop."""
    return min(n, k + 1)


def first_asks(k: int, n: int) -> int:
    """How many candidates a reader asks FetchHeld at once: the k indices it needs."""
    return min(n, k)


def spare_delay(elapsed: float, expected: float) -> float:
    """Seconds from the start of the round until the spare is asked, if every first ask
    is still good: twice the slowest expected answer (`expected`, the candidates' smoothed
    latency) at first; once all but one index are in after `elapsed` seconds, as long again
    as those took (SPARE_FLOOR at least), whichever is sooner. A failed ask (refused, no
    index, corrupt, an older node) asks the spare at once."""
    late = 2 * expected
    if elapsed < 0:  # all but one not in yet
        return late
    return min(late, elapsed + max(SPARE_FLOOR, elapsed))
