"""Dialing decisions, sans-IO: when an address may be dialed again, which duplicate to keep.

Backoff: a failed address waits an exponentially growing delay, capped, with
jitter drawn from the caller's `rng` (a fraction in [0, 1)): the delay is
between half and all of the exponential step, so nodes that failed together
(a site's power cut) do not redial in lockstep. At most `max_addresses` are
remembered; the oldest failure is forgotten first, so a flood of bad
addresses costs bounded memory.

Tie-break: when two peers dial each other at once, both keep the connection
dialed by the peer with the smaller public key, so both keep the same one; a
peer that redials (same direction as before) replaces its stale connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

JITTER = 0.5  # the delay drawn is (1 - JITTER * rng()) of the step


@dataclass(frozen=True)
class _Failure:
    retry_at: float
    step: float


class Backoff:
    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        rng: Callable[[], float],
        max_addresses: int = 4096,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"need 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.rng = rng
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, _Failure] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def wait(self, address: str, now: float) -> float:
        """Seconds before `address` may be dialed again (0.0: now)."""
        failure = self._failures.get(address)
        return 0.0 if failure is None else max(0.0, failure.retry_at - now)

    def failed(self, address: str, now: float) -> float:
        """A dial to `address` failed at `now`; returns the delay before the next one."""
        before = self._failures.pop(address, None)
        step = self.initial if before is None else min(before.step * 2, self.maximum)
        delay = step * (1 - JITTER * self.rng())
        self._failures[address] = _Failure(now + delay, step)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        return delay

    def succeeded(self, address: str) -> None:
        """A dial (or an authenticated inbound connection) reached `address`: no more waiting."""
        self._failures.pop(address, None)


def keep_new_connection(
    local_key: bytes, remote_key: bytes, *, existing_outbound: bool, new_outbound: bool
) -> bool:
    """Whether a new connection to a peer replaces the one already open to it."""
    redialed = existing_outbound is new_outbound
    smaller_dialed_new = (local_key < remote_key) is new_outbound
    return redialed or smaller_dialed_new
