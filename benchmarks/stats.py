"""The analytic side of the durability bench: binomial availability and intervals.

Pure functions, so the report can print the prediction beside every measured
figure and the tests can check the formulas against hand-computed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Scheme:
    """k-of-n erasure coding; k = 1 is replication (any one of n shards restores)."""

    k: int
    n: int

    @classmethod
    def parse(cls, text: str) -> Scheme:
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"scheme {text!r}: expected K/N, e.g. 4/8") from None
        if not 1 <= k <= n <= 255:
            raise ValueError(f"scheme {text!r}: need 1 <= K <= N <= 255")
        return cls(k, n)

    @property
    def overhead(self) -> float:
        return self.n / self.k

    @property
    def label(self) -> str:
        if self.k == 1:
            return f"{self.n}x replication"
        return f"{self.k}/{self.n} RS"

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def binomial_availability(k: int, n: int, down: float) -> float:
    """P(at least k of n holders are up) when each is down independently with `down`."""
    if not 0.0 <= down <= 1.0:
        raise ValueError(f"probability out of range: {down}")
    up = 1.0 - down
    return sum(math.comb(n, i) * down**i * up ** (n - i) for i in range(n - k + 1))


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (sound at 0 and 1, unlike Wald's)."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials > 0, got {successes}/{trials}")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high
