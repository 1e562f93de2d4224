"""EcoOptiGen's pruning state for one tune (Wang et al., 2023), in code of our own.

A config is evaluated on a growing subset of the data with one completion per point, then with a
doubling number of completions; it stops as soon as its estimated cost per instance exceeds the
inference budget, or (for a 0/1 metric, once all completions are in) as soon as even a perfect score
on the points left could not beat the best config so far. (max_tokens, n) pairs found too expensive
for a model and prompt are remembered: any config at least as large is pruned without a request.
"""
from __future__ import annotations

import math
from collections import defaultdict


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


def cannot_beat(values: list[float], total: int, best: float | None, mode: str) -> bool:
    """True when even the best possible 0/1 outcomes on the points left cannot beat `best`."""
    if best is None or not values or len(values) >= total or any(v not in (0, 1) for v in values):
        return False
    if mode == "max":
        return (sum(values) + (total - len(values))) / total < best
    return sum(values) / total > best
