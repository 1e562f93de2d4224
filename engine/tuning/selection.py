"""Which trial a tune ships: the cheapest config among those that do the task equally well.

Only complete trials compete (evaluated on every tune point, not pruned), so every comparison is on the same
points. Two rules:

- `best` (default): the trials whose metric equals the best; cost per instance breaks the tie (then the
  earlier trial). Use it when the metric is exact on these points (a deterministic model, or many points).
- `1se`, the one-standard-error rule (Breiman et al. 1984; glmnet's `lambda.1se`): the cheapest trial whose
  metric is within one standard error of the best's. The error is the tighter of two: the best trial's own
  standard error (the classic rule) and the paired standard error of the difference between the two trials on
  the same points (which cancels how hard each point is). Taking the tighter one means the rule never admits
  a config the classic rule would reject. Use it when the metric is noisy (few points, sampled answers): a
  config that is better by less than the noise is not worth paying more for.

`Leader` keeps the best-so-far during the search, in the order trials are reported, and gives the bar a trial
must still be able to reach to stay in the running (metric pruning); `choose` makes the final choice.

Both rules apply to the metric as `agg_method` aggregates it (the mean by default; the median, the worst point
with `min`, ...): "best" is the best aggregate, and the standard errors are that aggregate's (a bootstrap's for
anything but the mean, see engine/core/stats.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from ..core.config import SELECTION_RULES as RULES
from ..core.errors import ConfigError
from ..core.records import TrialRecord
from ..core.stats import Aggregate, paired_se

TIE = 1e-12  # metrics aggregate the same points: equal configs give equal figures, up to rounding


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ConfigError(f"selection rule {rule!r} is not one of {list(RULES)} (best: cost breaks exact ties; "
                          "1se: the cheapest within one standard error of the best)")
    return rule


def is_complete(trial: TrialRecord, metric: str, total: int) -> bool:
    """Evaluated on every tune point, not pruned, with a metric and a per-point result for each point."""
    value = trial.metrics.get(metric)
    return (not trial.pruned and isinstance(value, (int, float)) and math.isfinite(value)
            and trial.data_used == total and len(trial.scores) == total)


def _cost(trial: TrialRecord) -> float:
    cost = trial.inference_cost_usd_per_instance
    return cost if isinstance(cost, (int, float)) and math.isfinite(cost) else math.inf


def _equal(a: float, b: float) -> bool:
    return abs(a - b) <= TIE * max(1.0, abs(a), abs(b))


def _rank(trial: TrialRecord, metric: str, mode: str) -> tuple:
    """Sort key: better metric first, then cheaper, then earlier."""
    value = trial.metrics[metric]
    return (-value if mode == "max" else value, _cost(trial), trial.number)


def _better_than(a: TrialRecord, b: TrialRecord, metric: str, mode: str) -> bool:
    """`a` beats `b`: a better metric, or an equal one at a lower cost (then the earlier trial)."""
    va, vb = a.metrics[metric], b.metrics[metric]
    if not _equal(va, vb):
        return va > vb if mode == "max" else va < vb
    return (_cost(a), a.number) < (_cost(b), b.number)


@dataclass
class Choice:
    """The shipped trial, the best one it was measured against, and why it won."""

    trial: TrialRecord
    best: TrialRecord
    rule: str
    reason: str
    equals: list[TrialRecord] = field(default_factory=list)  # the equally good ones, cheapest first
    complete: int = 0


def choose(trials: Sequence[TrialRecord], metric: str, mode: str, rule: str, total: int,
           agg: Aggregate | None = None) -> Choice | None:
    """The trial to ship under `rule`, or None when no trial is complete. `agg` is how the metric aggregates
    its points (agg_method): the errors the 1-SE rule compares are that aggregate's."""
    complete = [t for t in trials if is_complete(t, metric, total)]
    if not complete:
        return None
    best = min(complete, key=lambda t: _rank(t, metric, mode))
    top = best.metrics[metric]
    if rule == "best":
        equals = [t for t in complete if _equal(t.metrics[metric], top)]
        tolerance = 0.0
    else:
        tolerance = best.interval.se if best.interval else 0.0
        equals = [t for t in complete if _within(t, best, metric, mode, tolerance, agg)]
    equals.sort(key=lambda t: (_cost(t), _rank(t, metric, mode)))
    chosen = equals[0]
    return Choice(chosen, best, rule, _reason(chosen, best, equals, len(complete), metric, tolerance, rule),
                  equals, len(complete))


def _within(trial: TrialRecord, best: TrialRecord, metric: str, mode: str, best_se: float,
            agg: Aggregate | None = None) -> bool:
    """Within one standard error of `best`: the tighter of best's own and the paired one on the same points."""
    gap = best.metrics[metric] - trial.metrics[metric]
    gap = gap if mode == "max" else -gap
    if _equal(gap, 0.0) or gap < 0:
        return True
    se = min(best_se, paired_se(best.scores, trial.scores, agg))
    return gap <= se * (1 + 1e-9)


def _reason(chosen: TrialRecord, best: TrialRecord, equals: list[TrialRecord], complete: int, metric: str,
            tolerance: float, rule: str) -> str:
    """`cheapest of 3 complete trials at success 0.65; 12 complete in all` (and the 1-SE variants)."""
    value, of = chosen.metrics[metric], f"{complete} complete in all"
    if rule == "best":
        if len(equals) == 1:
            return f"best {metric} {value:.4g}; {of}"
        return f"cheapest of {len(equals)} complete trials at {metric} {value:.4g}; {of}"
    within = f"{len(equals)} complete trials within 1 SE of the best {metric} {best.metrics[metric]:.4g} ± {tolerance:.3g}"
    if chosen is best:
        return f"the best is also the cheapest of {within}; {of}"
    return f"cheapest of {within} (trial {best.number}; this one {value:.4g}); {of}"


class Leader:
    """The best complete trial so far, in report order, and the bar a running trial must be able to reach."""

    def __init__(self, metric: str, mode: str, rule: str, total: int):
        self.metric, self.mode, self.rule, self.total = metric, mode, check_rule(rule), total
        self.trial: TrialRecord | None = None

    def offer(self, trial: TrialRecord) -> None:
        if is_complete(trial, self.metric, self.total) and (
                self.trial is None or _better_than(trial, self.trial, self.metric, self.mode)):
            self.trial = trial

    @property
    def metric_value(self) -> float | None:
        return self.trial.metrics[self.metric] if self.trial else None

    @property
    def bar(self) -> float | None:
        """A trial that cannot reach this even with perfect answers left can be stopped: under `best` the
        best metric itself (a tie may still win on cost), under `1se` the best less its standard error (the
        loosest tolerance `choose` may grant)."""
        if self.trial is None:
            return None
        value = self.metric_value
        if self.rule == "best" or self.trial.interval is None:
            return value
        se = self.trial.interval.se
        return value - se if self.mode == "max" else value + se
