"""How sure a metric averaged over data points is: its standard error and a 95% interval.

A 0/1 metric (right or wrong per point) gets the Wilson score interval, which stays inside [0, 1] and is
honest at 0/n and n/n where the normal approximation collapses to a point; any other metric gets a
percentile bootstrap of the mean, seeded, so a rerun reports the same interval. The standard error is the
sample standard deviation over sqrt(n) (ddof=1, as cross-validation's one-standard-error rule uses it).
`paired_se` is the standard error of the difference between two configs scored on the same points, which
cancels the points' own difficulty and is usually much tighter than either config's error alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # intervals are part of what a rerun must reproduce


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` points with its standard error and 95% interval (`method`: wilson or bootstrap)."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    method: str

    def text(self, digits: int = 3) -> str:
        """`0.650 ± 0.109, 95% CI [0.433, 0.819], 20 points` (± is one standard error)."""
        f = lambda v: f"{v:.{digits}f}"  # noqa: E731
        return f"{f(self.mean)} ± {f(self.se)}, 95% CI [{f(self.low)}, {f(self.high)}], {self.n} points"

    def as_metrics(self, name: str) -> dict[str, float]:
        """`{name}_se`, `{name}_ci_low`, `{name}_ci_high`: the names trials.jsonl and MLflow carry."""
        return {f"{name}_se": self.se, f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}

    def below(self, other: "Estimate", mode: str = "max") -> bool:
        """This interval lies wholly on the worse side of `other`'s (below it for a metric to maximise)."""
        return self.high < other.low if mode == "max" else self.low > other.high


def estimate(values: Sequence[float]) -> Estimate | None:
    """The mean of `values` with its error; None when there are none."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return None
    mean = math.fsum(xs) / n
    se = standard_error(xs)
    if all(x in (0.0, 1.0) for x in xs):
        low, high = wilson(mean, n)
        return Estimate(mean, se, low, high, n, "wilson")
    low, high = bootstrap(xs)
    return Estimate(mean, se, low, high, n, "bootstrap")


def standard_error(xs: Sequence[float]) -> float:
    """Sample standard deviation over sqrt(n); 0 for fewer than two points (nothing to estimate it from)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mean = math.fsum(xs) / n
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1) / n)


def paired_se(a: Sequence[float], b: Sequence[float]) -> float:
    """The standard error of mean(a) - mean(b) when a[i] and b[i] score the same point."""
    if len(a) != len(b):
        raise ValueError(f"paired results need the same points ({len(a)} vs {len(b)})")
    return standard_error([x - y for x, y in zip(a, b)])


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion p observed on n trials."""
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding never leaves p outside


def bootstrap(xs: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
              ) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean, in chunks so that 5,000 points stay a few MB."""
    import numpy as np

    values = np.asarray(xs, dtype=float)
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, 500_000 // len(values))
    means = np.concatenate([values[rng.integers(0, len(values), (min(chunk, resamples - i), len(values)))].mean(1)
                            for i in range(0, resamples, chunk)])
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)
