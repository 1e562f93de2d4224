"""One record per trial, written the same way everywhere: the search (FLAML), the JSONL trial log and MLflow.

A leaf: it knows nothing of how a trial is run or logged, so the tuner and the tracker both depend on it and
not on each other. Names carry their units (`_usd`, `_s`); values that are not finite (a pruned trial has no
metric, an unmeasured cost is unknown) become null in `as_dict()`, which is valid JSON.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .redaction import public_view
from .stats import Estimate


def finite_or_none(value):
    """Numbers stay (numpy scalars become Python numbers), inf and nan become None, others pass through."""
    if hasattr(value, "item") and hasattr(value, "dtype"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class TrialRecord:
    """What one trial tried and measured."""

    number: int
    config: dict
    metrics: dict = field(default_factory=dict)  # eval_func's metrics, aggregated over the points answered
    scores: list = field(default_factory=list)  # the tuned metric per point answered, in data order
    interval: Estimate | None = None  # the tuned metric's standard error and 95% interval (also in metrics)
    cost_usd: float = 0.0  # list price of every response the trial used, cached ones included
    paid_usd: float = 0.0  # dollars actually paid now (cache hits are free)
    inference_cost_usd_per_instance: float = math.nan  # estimated cost of the full config per data point
    cache_hits: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    data_used: int = 0  # data points answered
    n_used: int = 0  # completions per point reached
    pruned: str = ""  # "", or why it stopped early: "cost", "metric", "budget", "error"
    error: str = ""  # the failure that ended a trial pruned for "error"
    started_at: float = 0.0  # epoch seconds
    ended_at: float = 0.0

    @property
    def wall_time_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def saved_by_cache_usd(self) -> float:
        return self.cost_usd - self.paid_usd

    def as_dict(self) -> dict:
        """JSON-safe: credentials redacted from the config, non-finite numbers as None."""
        return {
            "trial": self.number, "config": public_view(self.config),
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "scores": [finite_or_none(v) for v in self.scores],
            "cost_usd": self.cost_usd, "paid_usd": self.paid_usd,
            "saved_by_cache_usd": self.saved_by_cache_usd,
            "inference_cost_usd_per_instance": finite_or_none(self.inference_cost_usd_per_instance),
            "cache_hits": self.cache_hits, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "data_used": self.data_used, "n_used": self.n_used,
            "pruned": self.pruned or None, "error": self.error or None, "started_at": self.started_at,
            "ended_at": self.ended_at, "wall_time_s": round(self.wall_time_s, 4),
        }

    def for_search(self, metric: str, mode: str) -> dict:
        """The flat result FLAML reads: metrics, `cost_usd` (its cost attribute) and the inference cost
        it constrains. FLAML needs numbers, so a missing metric or cost counts as the worst there is."""
        record = self.as_dict()
        worst = -math.inf if mode == "max" else math.inf
        flat = {k: v for k, v in record.items() if k not in ("config", "metrics", "scores")}
        flat.update({k: v for k, v in record["metrics"].items() if v is not None})
        if flat.get(metric) is None:
            flat[metric] = worst
        if flat["inference_cost_usd_per_instance"] is None:
            flat["inference_cost_usd_per_instance"] = math.inf
        return flat
