"""`tune`: a cost-aware FLAML BlendSearch over inference settings under two budgets.

A `Tuner` is made for one tune and holds all of its state (money, pruning table, best so far, trials), so two
tunes in one process or in threads never see each other's. It composes the parts: the `TuneSpec` (what was
asked), the preflight (what it can cost), the `StageRunner` (how one config is evaluated) and the
`TrialReporter` (what is said and logged); FLAML decides what to try next.
"""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Any, Callable

with warnings.catch_warnings():  # flaml warns that its AutoML extra is missing; tuning does not need it
    warnings.simplefilter("ignore")
    from flaml import BlendSearch, tune

from ..budget import BudgetGuard
from ..errors import AuthenticationError, BudgetError, ProviderError
from ..evaluation import Evaluator
from ..records import TrialRecord
from ..requests import Requester
from .preflight import dry_run_eval_func, estimate
from .reporter import TrialReporter
from .space import build_space
from .spec import TuneSpec
from .stages import StageRunner

MAX_FREE_PRUNES = 25  # with num_samples=-1, a search whose space is all pruned would otherwise never end


class Tuner:
    """One tune: everything is checked before a cent is spent, then FLAML searches under both budgets."""

    def __init__(self, spec: TuneSpec, requester: Requester, seed: int | str,
                 on_trial: Callable[[TrialRecord], None] | None = None):
        self.spec = spec
        self.space = build_space(spec.space)
        self.guard = BudgetGuard(spec.optimization_budget)
        evaluator = Evaluator(requester, seed, spec.concurrency, self.guard, spec.force_chat, spec.progress)
        self.stages = StageRunner(spec, self.space, evaluator, requester.catalog)
        self.reporter = TrialReporter(spec.progress, spec.log_file_name, on_trial,
                                      spec.num_samples if spec.num_samples > 0 else None)
        self.trials: list[TrialRecord] = []
        self.best: TrialRecord | None = None
        self.stopped_by_budget = False
        self.stopped_by_pruning = False
        self._free_prunes = 0  # consecutive trials pruned from the table alone: they cost the search nothing
        self.preflight = estimate(spec, self.space, requester.catalog, seed)
        dry_run_eval_func(spec)

    @property
    def best_metric(self) -> float | None:
        return self.best.metrics[self.spec.metric] if self.best else None

    def run(self) -> tuple[dict, Any]:
        """Search until a budget or num_samples ends it; returns (best config, FLAML's analysis)."""
        spec = self.spec
        self.reporter.say(self.preflight.line(spec))
        constraints = [("inference_cost_usd_per_instance", "<=", spec.inference_budget)] \
            if spec.inference_budget else None
        search = BlendSearch(metric=spec.metric, mode=spec.mode, space=self.space.space, cost_attr="cost_usd",
                             cost_budget=spec.optimization_budget, metric_constraints=constraints)
        with self.reporter, _quiet_search_logs():
            analysis = tune.run(self._trial, search_alg=search, num_samples=spec.num_samples, verbose=0,
                                automl_info=(0.0,))  # the engine logs trials itself: FLAML's MLflow logging off
        self.reporter.say(self._summary_line())
        if self.best is None:
            raise BudgetError("no config was evaluated in full within the budgets "
                              f"(trials: {len(self.trials)}, spent ${self.guard.paid:.6f}); "
                              "raise optimization_budget or inference_budget")
        return self.best_config(), analysis

    def best_config(self) -> dict:
        return dict(self.best.config) if self.best else {}

    def _trial(self, sample: dict) -> dict | None:
        """FLAML's evaluation function: one trial, or None to stop the search."""
        if self.stopped_by_budget or self.stopped_by_pruning:
            return None
        record = TrialRecord(number=len(self.trials) + 1, config=self.space.decode(sample), started_at=time.time())
        try:
            self.stages.evaluate(record, self.best_metric, f"trial {record.number}")
        except ProviderError as exc:
            if isinstance(exc, AuthenticationError) or exc.retryable:
                raise  # a refused key or an endpoint that stays down: no other config will do better
            record.pruned, record.error = "error", str(exc)  # e.g. a prompt too long for the model
            self.reporter.say(f"trial {record.number} failed and is skipped: {exc}")
        finally:
            record.ended_at = time.time()
            self.trials.append(record)
            self._keep_if_best(record)
            self.reporter.trial(record, self.best_metric, self.guard.charged, self.guard.paid)
        if record.pruned == "budget":
            self.stopped_by_budget = True
            self.reporter.say(f"optimization budget reached during trial {record.number}: stopping")
        self._free_prunes = self._free_prunes + 1 if record.pruned and not record.requests else 0
        if self._free_prunes >= MAX_FREE_PRUNES:
            self.stopped_by_pruning = True
            self.reporter.say(f"{MAX_FREE_PRUNES} trials in a row were pruned without a request: every config "
                              "left is known to exceed the inference budget; stopping")
            return None
        return record.for_search(self.spec.metric, self.spec.mode)

    def _keep_if_best(self, record: TrialRecord) -> None:
        value = record.metrics.get(self.spec.metric)
        if not record.pruned and value is not None and self.spec.better(value, self.best_metric):
            self.best = record

    def _summary_line(self) -> str:
        pruned = sum(1 for t in self.trials if t.pruned)
        end = "stopped: optimization budget reached" if self.stopped_by_budget else "done"
        best = f"best {self.spec.metric}={self.best_metric:.4f}" if self.best else "no complete trial"
        unanswered = (f" (and up to ${self.guard.unanswered:.6f} possibly billed for {self.guard.unanswered_requests}"
                      " attempts that got no answer)") if self.guard.unanswered_requests else ""
        return (f"tune {end}: {len(self.trials)} trials ({pruned} pruned), {best}; paid ${self.guard.paid:.6f}"
                f"{unanswered}, cache saved ${self.guard.saved:.6f}")


@contextlib.contextmanager
def _quiet_search_logs():
    """FLAML's per-trial INFO lines and optuna's per-study ones are noise here; set only while a tune runs,
    so that importing the engine changes no other library's logging."""
    loggers = [logging.getLogger(name) for name in ("flaml.tune.tune", "optuna")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        import optuna
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    except ImportError:  # pragma: no cover - flaml[blendsearch] brings optuna
        optuna = None
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if optuna is not None:
            optuna.logging.set_verbosity(verbosity)
