"""One record per trial, written the same way everywhere: the search (FLAML), the JSONL trial log and MLflow.

A leaf: it knows nothing of how a trial is run or logged, so the tuner and the tracker both depend on it and
not on each other. Names carry their units (`_usd`, `_s`); values that are not finite (a pruned trial has no
metric, an unmeasured cost is unknown) become null in `as_dict()`, which is valid JSON.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from .numbers import plain
from .redaction import public_view
from .stats import Estimate


def finite_or_none(value):
    """Numbers stay (numpy scalars become Python numbers), inf and nan become None, others pass through."""
    value = plain(value)
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
    # a complete trial's per point: {"answers": [...], "metrics": {...}, "cost_usd": ...} (not in as_dict)
    details: list = field(default_factory=list, repr=False)

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


@dataclass
class Summary:
    """What one experiment (tune, then test of the chosen config) came to: the table the CLI prints,
    summary.json, and what the MLflow parent run records."""

    task: str
    model: str
    trials: int = 0
    pruned: int = 0
    best_config: dict = field(default_factory=dict)
    metric: str = "success"
    mode: str = "max"
    tune_metric: float | None = None
    test_metric: float | None = None
    tune_interval: Estimate | None = None  # the chosen trial's metric on the tune points, with its error
    test_interval: Estimate | None = None
    tune_cost_per_instance: float | None = None  # the chosen trial's, as measured on the tune points
    test_cost_per_instance: float | None = None  # the chosen config's, as measured on the test points
    selection: str = "best"
    reason: str = ""  # why the chosen trial won (selection.py)
    test_result: dict = field(default_factory=dict)  # the test's metrics and accounting (TestRun.merged())
    paid: float = 0.0  # tune + test
    tune_paid: float = 0.0
    budget: float | None = None
    saved: float = 0.0
    cache_hits: int = 0
    requests: int = 0
    stopped_by_budget: bool = False
    nominal_prices: bool = False  # the model's price is nominal (a local model): no money was billed
    unanswered_requests: int = 0  # attempts that timed out after sending: they may have been billed
    unanswered_usd: float = 0.0  # their worst case
    output_dir: str = ""
    mlflow_run: str | None = None
    mlflow_ui: str | None = None  # how to see the runs just written

    def as_dict(self) -> dict:
        """summary.json: intervals as dicts, the config with credentials redacted."""
        out = dataclasses.asdict(self)
        out["best_config"] = public_view(self.best_config)
        out["carried_over"] = (not self.carry_over()) if self.tune_interval and self.test_interval else None
        return out

    def table(self) -> str:
        rows = [("task", self.task), ("model", self.model),
                ("trials", f"{self.trials} ({self.pruned} pruned)"
                 + (", stopped by the optimization budget" if self.stopped_by_budget else "")),
                ("chosen config", json.dumps(public_view(self.best_config))),
                (f"chosen by rule {self.selection}", self.reason or "-"),
                (f"{self.metric} on tune", _fmt(self.tune_metric, self.tune_interval)),
                (f"{self.metric} on test", _fmt(self.test_metric, self.test_interval)),
                *([("carried over?", "no: " + self.carry_over())] if self.carry_over() else []),
                ("cost per 1K instances", f"${(self.tune_cost_per_instance or 0) * 1000:.4f} on tune, "
                                          f"${(self.test_cost_per_instance or 0) * 1000:.4f} on test"),
                ("dollars paid", f"${self.paid:.6f} (tune ${self.tune_paid:.6f} of "
                                 + (f"${self.budget:g} budget, " if self.budget is not None else "no budget, ")
                                 + f"test ${self.paid - self.tune_paid:.6f})"
                                 + ("; nominal prices, nothing was billed" if self.nominal_prices else "")),
                *([("possibly billed", f"up to ${self.unanswered_usd:.6f} for {self.unanswered_requests} attempts "
                                       "that timed out after sending")] if self.unanswered_requests else []),
                ("saved by the cache", f"${self.saved:.6f}"),
                ("requests / cache hits", f"{self.requests} / {self.cache_hits}"), ("results in", self.output_dir)]
        if self.mlflow_run:
            rows.append(("mlflow run", f"{self.mlflow_run} (promote: python -m engine.promote run_id={self.mlflow_run})"))
        if self.mlflow_ui:
            rows.append(("see it in MLflow", self.mlflow_ui))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


    def carry_over(self) -> str:
        """One line when the test interval lies wholly on the worse side of the tune interval, else ''."""
        if self.tune_interval and self.test_interval and self.test_interval.below(self.tune_interval, self.mode):
            return (f"the tuned result did not carry over (test 95% CI [{self.test_interval.low:.3f}, "
                    f"{self.test_interval.high:.3f}] lies wholly {'below' if self.mode == 'max' else 'above'} "
                    f"tune [{self.tune_interval.low:.3f}, {self.tune_interval.high:.3f}])")
        return ""


def _fmt(value, interval: Estimate | None = None) -> str:
    if value is None:
        return "-"
    return interval.text() if interval is not None else f"{value:.4f}"
