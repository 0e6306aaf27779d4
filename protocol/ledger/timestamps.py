"""Coarse ledger times: what an entry publishes about when it was written.

Every member keeps every entry, so a millisecond timestamp tells all of them
to the millisecond when a hospital recorded a patient's record, when she
attested it and when a grant was made, and lines such moments up across
feeds. The rules need far less: timestamps never decrease along a feed, an
entry is not accepted more than MAX_CLOCK_SKEW_MS (5 minutes) ahead of the
receiver, and the rate limits count entries per minute, hour and day
(protocol.ledger.feeds). A minute is the coarsest grain that keeps the
minute limit meaning what it says (with a coarser one, the per-minute limit
would count per grain), so honest writers publish times floored to the minute
(`entry_time`). The rules do not refuse finer times: a finer time harms only
its own author's privacy, old entries stay valid as they are, and a rule
could not stop an author who wants to leak time anyway (other fields, or
just when the entry is first gossiped).

Grant expiry (`expires_at`) keeps its meaning, the end of the grant in ms;
the CLI rounds a duration's end up to the minute (`expiry_time`), since
"now + 30 days" to the millisecond would give away the writing time again.
"""

from __future__ import annotations

TIMESTAMP_GRAIN_MS = 60_000


def floor_time(ms: int) -> int:
    """`ms` floored to the grain."""
    return ms - ms % TIMESTAMP_GRAIN_MS


def ceil_time(ms: int) -> int:
    """`ms` rounded up to the grain."""
    return -(-ms // TIMESTAMP_GRAIN_MS) * TIMESTAMP_GRAIN_MS


def entry_time(now_ms: int, after_ms: int = 0) -> int:
    """The timestamp of a new entry written at `now_ms` after one stamped `after_ms`.

    On the grain and never before `after_ms` (feeds never go back): an older
    entry with a fine time is followed by the next grain boundary, at most a
    grain ahead of now, well within the allowed clock skew.
    """
    return max(floor_time(now_ms), ceil_time(after_ms))


def expiry_time(end_ms: int) -> int:
    """A grant's end computed as now + a duration, rounded up to the grain (never
    shorter than asked, at most a grain longer)."""
    return ceil_time(end_ms)


def is_coarse(ms: int) -> bool:
    """True when `ms` is on the grain (what this version's writers publish)."""
    return ms % TIMESTAMP_GRAIN_MS == 0
