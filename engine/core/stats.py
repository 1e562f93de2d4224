"""How sure a metric averaged over data points is: its standard error and a 95% interval.

A 0/1 metric (right or wrong per point) gets the Wilson score interval, which stays inside [0, 1] and is
honest at 0/n and n/n where the normal approximation collapses to a point; any other metric gets a
percentile bootstrap of the mean, seeded, so a rerun reports the same interval. The standard error is the
sample standard deviation over sqrt(n) (ddof=1, as cross-validation's one-standard-error rule uses it).
`paired_se` is the standard error of the difference between two configs scored on the same points, which
cancels the points' own difficulty and is usually much tighter than either config's error alone.

A metric aggregated otherwise than by the mean (`agg_method` of `test` and `tune`: median, min, max, sum, a
callable) gets the percentile bootstrap of that aggregate, its standard error the bootstrap's standard
deviation, and pairs by resampling both configs' points together. For an extreme (min, max) the bootstrap
cannot go past the observed extreme: the interval starts at the observed worst (best) point and its width
says how much that figure rests on one or two points; no interval covers a population's minimum without
assumptions about it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .errors import ConfigError

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # intervals are part of what a rerun must reproduce
# agg_method names, as `test` takes them (pyautogen 0.1.x: avg, average, median; the rest are this engine's)
AGGREGATORS: dict[str, Callable] = {"avg": statistics.fmean, "mean": statistics.fmean, "average": statistics.fmean,
                                    "median": statistics.median, "min": min, "max": max, "sum": sum}
_MEAN = frozenset({"avg", "mean", "average"})


@dataclass(frozen=True)
class Estimate:
    """An aggregate over `n` points (`mean`: the mean, or the `statistic` named) with its standard error and
    95% interval (`method`: wilson or bootstrap)."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    method: str
    statistic: str = "mean"  # or median, min, max, sum, custom (agg_method)

    def text(self, digits: int = 3) -> str:
        """`0.650 ± 0.109, 95% CI [0.433, 0.819], 20 points` (± is one standard error); another aggregate
        than the mean is named: `min 0.500 ± 0.000, 95% CI [...], 20 points`."""
        f = lambda v: f"{v:.{digits}f}"  # noqa: E731
        name = "" if self.statistic == "mean" else f"{self.statistic} "
        return f"{name}{f(self.mean)} ± {f(self.se)}, 95% CI [{f(self.low)}, {f(self.high)}], {self.n} points"

    def as_metrics(self, name: str) -> dict[str, float]:
        """`{name}_se`, `{name}_ci_low`, `{name}_ci_high`: the names trials.jsonl and MLflow carry."""
        return {f"{name}_se": self.se, f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}

    def below(self, other: "Estimate", mode: str = "max") -> bool:
        """This interval lies wholly on the worse side of `other`'s (below it for a metric to maximise)."""
        return self.high < other.low if mode == "max" else self.low > other.high


@dataclass(frozen=True)
class Aggregate:
    """How a tune aggregates its metric over points (`agg_method`, the same forms as `test`'s): `fn` over the
    per-point values of the eval_func metric the tuned `metric` is made from (itself, or for a dict key
    `<prefix>_<metric>` such as `median_success`, that metric)."""

    metric: str
    fn: Callable[[list], float] = statistics.fmean
    statistic: str = "mean"  # mean, median, min, max, sum, or custom (a callable)

    @property
    def is_mean(self) -> bool:
        return self.statistic == "mean"

    def source(self, point: Mapping) -> str | None:
        """The per-point metric aggregated into `metric`: `metric` itself when eval_func gives it, else the
        longest `_`-suffix of it that eval_func gives (as `test` reads a dict key); None when neither is."""
        if self.metric in point:
            return self.metric
        parts = self.metric.split("_")
        return next((s for s in ("_".join(parts[i:]) for i in range(1, len(parts))) if s in point), None)

    def __call__(self, values: Sequence[float]) -> float:
        return float(self.fn(list(values)))


def aggregation(agg_method, metric: str) -> Aggregate:
    """`agg_method` (a name, a callable, or {name: callable or name}) as it applies to the tuned `metric`."""
    method = agg_method
    if isinstance(agg_method, Mapping):
        if metric not in agg_method:
            raise ConfigError(f"agg_method is a dict without the tuned metric {metric!r} (its keys: "
                              f"{sorted(agg_method)}): name the metric, e.g. {{{metric!r}: min}}")
        method = agg_method[metric]
    if isinstance(method, str):
        if method not in AGGREGATORS:
            raise ConfigError(f"agg_method {method!r} is not one of {sorted(AGGREGATORS)} (or give a callable)")
        return Aggregate(metric, AGGREGATORS[method], "mean" if method in _MEAN else method)
    if callable(method):
        return Aggregate(metric, method, "custom")
    raise ConfigError(f"agg_method must be a name ({sorted(AGGREGATORS)}), a callable or a dict of them per metric, "
                      f"got {type(method).__name__}")


def with_functions(agg_method):
    """`agg_method` with the names in a dict replaced by their functions (a config file can only name them)."""
    if isinstance(agg_method, Mapping):
        return {k: AGGREGATORS.get(v, v) if isinstance(v, str) else v for k, v in agg_method.items()}
    return agg_method


def estimate(values: Sequence[float], agg: Aggregate | None = None) -> Estimate | None:
    """The mean of `values` (or their `agg`) with its error; None when there are none."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return None
    if agg is not None and not agg.is_mean:
        return _bootstrap_estimate(xs, agg)
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


def paired_se(a: Sequence[float], b: Sequence[float], agg: Aggregate | None = None) -> float:
    """The standard error of mean(a) - mean(b) (or agg(a) - agg(b)) when a[i] and b[i] score the same point."""
    if len(a) != len(b):
        raise ValueError(f"paired results need the same points ({len(a)} vs {len(b)})")
    if agg is not None and not agg.is_mean:
        import numpy as np

        if len(a) < 2:
            return 0.0
        xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        diffs = [agg(xa[i]) - agg(xb[i]) for i in _resamples(len(a))]
        return float(np.std(diffs, ddof=1))
    return standard_error([x - y for x, y in zip(a, b)])


def _resamples(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """The bootstrap's index sets (seeded: a rerun resamples the same points)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.integers(0, n, n) for _ in range(resamples))


_VECTOR = {"median": "median", "min": "min", "max": "max", "sum": "sum"}  # numpy's name of a named aggregate


def _bootstrap_estimate(xs: list[float], agg: Aggregate) -> Estimate:
    """`agg` of the points, its bootstrap standard deviation and percentile 95% interval (which always holds
    the observed figure: for an extreme it starts there, as no resample goes past it)."""
    import numpy as np

    value = agg(xs)
    values = np.asarray(xs, dtype=float)
    if len(xs) < 2 or np.all(values == values[0]):
        return Estimate(value, 0.0, value, value, len(xs), "bootstrap", agg.statistic)
    if agg.statistic in _VECTOR:  # the same resamples as the loop below, computed at once
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        picks = np.stack([rng.integers(0, len(xs), len(xs)) for _ in range(BOOTSTRAP_RESAMPLES)])
        stats = getattr(np, _VECTOR[agg.statistic])(values[picks], axis=1)
    else:
        stats = np.array([agg(values[i]) for i in _resamples(len(xs))])
    low, high = np.quantile(stats, [0.025, 0.975])
    return Estimate(value, float(np.std(stats, ddof=1)), min(float(low), value), max(float(high), value), len(xs),
                    "bootstrap", agg.statistic)


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
