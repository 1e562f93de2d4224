"""EcoOptiGen's pruning state for one tune (Wang et al., 2023), in code of our own.

A config is evaluated on a growing subset of the data with one completion per point, then with a
doubling number of completions; it stops as soon as its estimated cost per instance exceeds the
inference budget, or (for a 0/1 metric, once all completions are in) as soon as even a perfect score
on the points left could not beat the best config so far (for the aggregate tuned: `cannot_beat`). (max_tokens, n) pairs found too expensive
for a model and prompt are remembered: any config at least as large is pruned without a request.
"""
from __future__ import annotations

import math
from collections import defaultdict

from ..core.stats import Aggregate


def n_ladder(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself last)."""
    steps, k = [], 1
    while k < n:
        steps.append(k)
        k *= 2
    return steps + [n]


FIRST_SUBSET = 8  # EcoOptiGen's first data subset: a config is judged on 8 points before it gets more


def subset_sizes(total: int, first: int = FIRST_SUBSET) -> list[int]:
    """Growing data subsets: first, 2*first, ... total."""
    sizes, k = [], max(1, min(first, total))
    while k < total:
        sizes.append(k)
        k *= 2
    return sizes + [total]


class CostPruner:
    """Remembers which (max_tokens, n) were too expensive, per (model, prompt)."""

    def __init__(self):
        self._too_expensive: dict[tuple, list[tuple[int, int]]] = defaultdict(list)

    def known_too_expensive(self, choice: tuple, max_tokens: int | None, n: int) -> bool:
        mt = max_tokens or math.inf
        return any(mt >= m and n >= k for m, k in self._too_expensive[choice])

    def remember(self, choice: tuple, max_tokens: int | None, n: int) -> None:
        self._too_expensive[choice].append((max_tokens or math.inf, n))


def estimate_inference_cost(prompt_cost: float, completion_cost_per_choice: float, n: int, fanout: bool) -> float:
    """Per-instance cost of the full config from what a partial evaluation measured."""
    return prompt_cost * (n if fanout else 1) + completion_cost_per_choice * n


def cannot_beat(values: list[float], total: int, best: float | None, mode: str, agg: Aggregate | None = None
                ) -> bool:
    """True when even the best possible outcomes on the points left cannot make the aggregate beat `best`.

    The bound is exact for the aggregates that only grow when a point's value grows (mean, median, min, max,
    sum): for a 0/1 metric the best outcome left is every point right (mode max) or wrong (mode min). Any
    metric: points left can only lower a min (raise a max), so a min already below the best (mode max) stays
    below it. A callable `agg_method` promises nothing of the kind: no metric pruning then.
    """
    agg = agg or Aggregate("")
    if best is None or not values or len(values) >= total or agg.statistic == "custom":
        return False
    if agg.statistic == "min" and mode == "max":
        return min(values) < best
    if agg.statistic == "max" and mode == "min":
        return max(values) > best
    if any(v not in (0, 1) for v in values):
        return False
    left = [1.0 if mode == "max" else 0.0] * (total - len(values))
    reachable = agg(list(values) + left)
    return reachable < best if mode == "max" else reachable > best
