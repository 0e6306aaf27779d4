"""When a node looks up its own neighbourhood again, sans-IO.

A node that cannot reach its bootstrap peers at start (they restart at the
same moment after a power cut, or start later) must keep trying, and a node
whose neighbourhood is still filling must ask again soon, or tables stay
nearly empty for a whole refresh interval. Three phases:

- joining: no peer has answered since the node started, its table is empty,
  or queries fail and no peer was heard for `quiet` seconds (the node was cut
  off). It looks itself up, through its table and its bootstrap peers.
- settling: it was heard, and keeps looking itself up at growing delays
  until a lookup made after the longest wait (`cap`) finds the table as it
  was. Each lookup reaches neighbours it has not met, who learn it in turn,
  and finds those that joined after it (nodes of a network started together
  join over a few retry periods, and a late joiner's own lookup need not
  reach every node whose neighbour it is), so the tables converge.
- settled: the ordinary bucket refresh takes over; the phase is checked again
  every `cap` seconds.

While joining or settling, lookups follow at jittered delays doubling from
`first` to `cap` (each between half and all of its step; the fraction comes
from the caller's `rng`), starting again from `first` whenever the phase
changes. A network smaller than k settles too: its tables stop growing. A
settling node makes about log2(cap/first) + 1 self-lookups in all.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass


class Phase(enum.Enum):
    JOINING = "joining"
    SETTLING = "settling"
    SETTLED = "settled"


@dataclass(frozen=True)
class Seen:
    """What the node knows of its own standing when it asks."""

    now: float
    table_size: int
    heard_at: float  # when a peer last answered or talked to it (-inf: never)
    failed_at: float  # when a query that failed was sent, the latest (-inf: none)


class JoinSchedule:
    def __init__(
        self,
        *,
        rng: Callable[[], float],
        first: float = 0.5,
        cap: float = 30.0,
        quiet: float = 60.0,
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"need 0 < first <= cap, got {first}, {cap}")
        self.rng = rng
        self.first = first
        self.cap = cap
        self.quiet = quiet
        self._settled = False  # a lookup after the longest wait found nothing new
        self._phase: Phase | None = None
        self._step = first
        self._waited = 0.0  # the step of the wait before the coming lookup

    def phase(self, seen: Seen) -> Phase:
        cut_off = seen.failed_at > seen.heard_at and seen.now - seen.heard_at > self.quiet
        if seen.table_size == 0 or seen.heard_at == -math.inf or cut_off:
            return Phase.JOINING
        return Phase.SETTLED if self._settled else Phase.SETTLING

    def looked_up(self, grew: bool) -> None:
        """A self-lookup ended; `grew`: the table holds contacts it did not hold before."""
        if not grew and self._waited >= self.cap:
            self._settled = True

    def next_delay(self, seen: Seen) -> tuple[Phase, float]:
        """The phase now, and how long to wait before asking again."""
        phase = self.phase(seen)
        if phase is Phase.JOINING:
            self._settled = False  # whatever was settled before no longer is
        if phase is not self._phase:
            self._phase = phase
            self._step = self.first
        if phase is Phase.SETTLED:
            return phase, self.cap
        self._waited = self._step
        delay = self._step * (1 - 0.5 * self.rng())
        self._step = min(self._step * 2, self.cap)
        return phase, delay
