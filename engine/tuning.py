"""`tune`: a cost-aware FLAML BlendSearch over inference settings under two budgets.

All state of one tune (money, pruning table, best so far, trial log) lives in a `Tuner`, so two tunes
in one process never see each other's.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from tqdm.auto import tqdm

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from flaml import BlendSearch, tune
try:  # BlendSearch's global search is optuna's; its per-study INFO lines are noise here
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
except ImportError:  # pragma: no cover - flaml[blendsearch] brings it
    pass

from .budget import BudgetGuard, worst_case_cost
from .errors import AuthenticationError, BudgetError, ConfigError, ProviderError
from .evaluation import EvalRun, Evaluator, aggregate, evaluate_points, extract_text
from .public import public_view
from .pruning import CostPruner, cannot_beat, estimate_inference_cost, n_ladder, subset_sizes
from .requests import Requester, prepare
from .space import SearchSpace, build_space

logger = logging.getLogger(__name__)
MAX_FREE_PRUNES = 25  # with num_samples=-1, a search whose space is all pruned would otherwise never end


@dataclass
class TrialOutcome:
    """What one trial measured; becomes the FLAML result and one line of the trial log."""

    config: dict
    metrics: dict = field(default_factory=dict)
    charged: float = 0.0
    spent: float = 0.0
    inference_cost: float = 0.0
    cache_hits: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    data_used: int = 0
    n_used: int = 0
    pruned: str = ""
    wall_time: float = 0.0

    def absorb(self, run: EvalRun) -> None:
        self.spent += run.spent
        self.charged += run.cost
        self.cache_hits += run.cache_hits
        self.requests += run.requests
        self.prompt_tokens += run.usage["prompt_tokens"]
        self.completion_tokens += run.usage["completion_tokens"]

    def result(self, metric: str) -> dict:
        return {**self.metrics, "cost": self.charged, "spent": self.spent, "inference_cost": self.inference_cost,
                "cache_hits": self.cache_hits, "pruned": bool(self.pruned), "data_used": self.data_used,
                "n_used": self.n_used, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "wall_time": self.wall_time}


class Tuner:
    """One tune: validates everything before a cent is spent, then searches under both budgets."""

    def __init__(self, requester: Requester, seed: int | str, data: Sequence[Mapping], metric: str, mode: str,
                 eval_func: Callable, inference_budget: float | None = None,
                 optimization_budget: float | None = None, num_samples: int = 1, log_file_name: str | None = None,
                 concurrency: int = 8, force_chat: bool = False, initial_subset: int | None = None,
                 progress: bool = True, space: dict | None = None,
                 on_trial: Callable[[int, TrialOutcome], None] | None = None):
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        if not data:
            raise ConfigError("data is empty: tuning needs at least one data point")
        if not callable(eval_func):
            raise ConfigError("eval_func must be callable: eval_func(responses, **data_point) -> dict of metrics")
        for name, value in (("inference_budget", inference_budget), ("optimization_budget", optimization_budget)):
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise BudgetError(f"{name} must be > 0 dollars, got {value!r}")
        if not isinstance(num_samples, int) or num_samples == 0 or num_samples < -1:
            raise ConfigError(f"num_samples must be a positive integer or -1, got {num_samples!r}")
        if num_samples == -1 and optimization_budget is None:
            raise ConfigError("num_samples=-1 needs an optimization_budget to end the search")
        self.requester, self.seed = requester, seed
        self.data, self.metric, self.mode, self.eval_func = list(data), metric, mode, eval_func
        self.inference_budget, self.optimization_budget = inference_budget, optimization_budget
        self.num_samples, self.log_file_name, self.progress = num_samples, log_file_name, progress
        self.on_trial = on_trial  # e.g. the MLflow tracker's child run per trial
        self.space: SearchSpace = build_space(space)
        self.guard = BudgetGuard(optimization_budget)
        self.evaluator = Evaluator(requester, seed, concurrency, self.guard, force_chat, progress)
        self.pruner = CostPruner()
        self.initial_subset = initial_subset or max(1, min(len(self.data), 8))
        self.trials: list[TrialOutcome] = []
        self.best: TrialOutcome | None = None
        self.stopped_by_budget = False
        self.stopped_by_pruning = False
        self._free_prunes = 0  # consecutive trials pruned from the table alone: they cost the search nothing
        self.preflight = self._preflight()
        self._check_metric_named()

    # ---- before any spend ------------------------------------------------------------------
    def _preflight(self) -> dict:
        """Template keys for every point and prompt, the cheapest request vs the budget, worst trial."""
        catalog = self.requester.catalog
        n_max = int(self._bound("n", 1)[1])
        mt_min, mt_max = self._bound("max_tokens", None)
        worst_trial, cheapest = 0.0, math.inf
        for model in self.space.models:
            spec = catalog.get(model)
            chunks = 1 if spec.ignores_n else len(n_ladder(n_max))
            for choice in range(len(self.space.prompts or self.space.messages)):
                base = self.space.decode({**self.space.constants, "model": model, **self._template_choice(choice)})
                trial = 0.0
                for i, point in enumerate(self.data):
                    worst = prepare(dict(base, n=1, max_tokens=int(mt_max) if mt_max else None), point,
                                    catalog, self.seed, self.evaluator.force_chat, index=i)[0]
                    one = worst_case_cost(spec, worst.payload)
                    prompt_part = worst_case_cost(spec, dict(worst.payload, max_tokens=1)) - spec.completion_price
                    trial += (n_max * one) if spec.ignores_n else (chunks * prompt_part + n_max * (one - prompt_part))
                    low = dict(worst.payload, max_tokens=int(mt_min) if mt_min else None)
                    cheapest = min(cheapest, worst_case_cost(spec, low))
                worst_trial = max(worst_trial, trial)
        if self.optimization_budget is not None and self.optimization_budget < cheapest:
            raise BudgetError(f"optimization_budget ${self.optimization_budget:g} is below the cheapest possible "
                              f"request (worst case ${cheapest:.6f}): nothing could be evaluated")
        size = self.space.size()
        covers = (self.optimization_budget / worst_trial) if self.optimization_budget and worst_trial else math.inf
        return {"space_size": size, "worst_trial_cost": worst_trial, "trials_covered": covers,
                "cheapest_request": cheapest}

    def _template_choice(self, i: int) -> dict:
        return {"prompt": i} if self.space.prompts is not None else {"messages": i}

    def _bound(self, name: str, default):
        try:
            return self.space.bounds(name)
        except KeyError:
            return default, default

    def _check_metric_named(self) -> None:
        """Dry-run eval_func on an empty answer: a metric it never returns is an error now, not later."""
        try:
            probe = self.eval_func([""], **self.data[0])
        except Exception:  # noqa: BLE001 - an eval_func may not cope with an empty answer; checked later
            return
        if isinstance(probe, dict) and self.metric not in probe:
            raise ConfigError(f"metric {self.metric!r} is not in eval_func's result (it returns {sorted(probe)})")

    # ---- the search ----------------------------------------------------------------------------
    def run(self) -> tuple[dict, Any]:
        self._say(self._preflight_line())
        search = BlendSearch(metric=self.metric, mode=self.mode, space=self.space.space, cost_attr="cost",
                             cost_budget=self.optimization_budget,
                             metric_constraints=[("inference_cost", "<=", self.inference_budget)]
                             if self.inference_budget else None)
        bar = tqdm(total=self.num_samples if self.num_samples > 0 else None, desc="tune", unit="trial",
                   disable=not self.progress)
        self._bar = bar
        flaml_logger = logging.getLogger("flaml.tune.tune")
        level = flaml_logger.level
        try:
            analysis = tune.run(self._trial, search_alg=search, num_samples=self.num_samples, verbose=0,
                                automl_info=(0.0,),  # engine logs trials itself: keep FLAML's MLflow logging off
                                )
        finally:
            bar.close()
            flaml_logger.setLevel(level)
        self._say(self._summary_line())
        if self.best is None:
            raise BudgetError("no config was evaluated in full within the budgets "
                              f"(trials: {len(self.trials)}, spent ${self.guard.paid:.6f}); "
                              "raise optimization_budget or inference_budget")
        return self.best_config(), analysis

    def best_config(self) -> dict:
        return dict(self.best.config) if self.best else {}

    def _trial(self, sample: dict) -> dict | None:
        if self.stopped_by_budget or self.stopped_by_pruning:
            return None  # tells FLAML to stop
        start = time.monotonic()
        outcome = TrialOutcome(config=self.space.decode(sample))
        try:
            self._evaluate(outcome)
        except ProviderError as exc:
            if isinstance(exc, AuthenticationError) or exc.retryable:
                raise  # a refused key or an endpoint that stays down: no other config will do better
            outcome.pruned, outcome.metrics = "error", {self.metric: self._worst()}  # e.g. prompt too long
            self._say(f"trial {len(self.trials) + 1} failed and is skipped: {exc}")
        finally:
            outcome.wall_time = time.monotonic() - start
            self.trials.append(outcome)
            self._log(outcome)
            if self.on_trial is not None:
                self.on_trial(len(self.trials), outcome)
            self._bar.update(1)
            best = self.best.metrics.get(self.metric) if self.best else None
            self._bar.set_postfix(best=best, used=f"${self.guard.charged:.5f}", paid=f"${self.guard.paid:.5f}",
                                  refresh=False)
        if outcome.pruned == "budget":
            self.stopped_by_budget = True
        self._free_prunes = self._free_prunes + 1 if outcome.pruned and not outcome.requests else 0
        if self._free_prunes >= MAX_FREE_PRUNES:
            self.stopped_by_pruning = True
            self._say(f"{MAX_FREE_PRUNES} trials in a row were pruned without a request: every config left "
                      "is known to exceed the inference budget; stopping")
            return None
        return outcome.result(self.metric)

    def _evaluate(self, t: TrialOutcome) -> None:
        config, n = t.config, t.config.get("n", 1)
        choice = self.space.choice_key(config)
        fanout = self.requester.catalog.get(config["model"]).ignores_n
        if self.pruner.known_too_expensive(choice, config.get("max_tokens"), n):
            t.pruned, t.metrics = "cost", {self.metric: self._worst()}
            t.inference_cost = math.inf
            return
        total = len(self.data)
        responses: list[list[dict]] = [[] for _ in range(total)]
        prompt_cost = [0.0] * total
        completion_cost = 0.0
        per_point: list[dict] = []
        have = 0
        for size in subset_sizes(total, self.initial_subset):  # stage 1: one completion, growing data
            points = range(t.data_used, size)
            run = self.evaluator.run(dict(config, n=1), self.data, points, desc=f"trial {len(self.trials) + 1}")
            t.absorb(run)
            completion_cost += self._collect(run, points, responses, prompt_cost)
            t.data_used, have = t.data_used + sum(o is not None for o in run.outcomes), 1
            if run.budget_exhausted:
                return self._stop(t, responses, "budget")
            t.inference_cost = estimate_inference_cost(sum(prompt_cost) / size, completion_cost / size, n, fanout)
            if self._too_expensive(t, choice):
                return self._stop(t, responses, "cost")
            if n == 1:
                per_point += evaluate_points(run, self.data, points, self.eval_func)
                self._require_metric(per_point)
                best = self.best.metrics[self.metric] if self.best else None
                if cannot_beat([float(p[self.metric]) for p in per_point], total, best, self.mode):
                    return self._stop(t, responses, "metric", scored=per_point)
        for step in n_ladder(n)[1:]:  # stage 2: more completions on all the data, reusing those we have
            run = self.evaluator.run(dict(config, n=step - have), self.data, range(total), offset=have,
                                     desc=f"trial {len(self.trials) + 1} n={step}")
            t.absorb(run)
            completion_cost += self._collect(run, range(total), responses, None)
            have = t.n_used = step
            if run.budget_exhausted:
                return self._stop(t, responses, "budget")
            t.inference_cost = estimate_inference_cost(sum(prompt_cost) / total, completion_cost / total / have,
                                                       n, fanout)
            if self._too_expensive(t, choice):
                return self._stop(t, responses, "cost")
        t.n_used = n
        if n > 1:
            per_point = self._score(responses)
        self._finish(t, per_point)

    def _collect(self, run: EvalRun, points, responses, prompt_cost) -> float:
        """Append each point's new choices; note the prompt cost of one request (stage 1 only);
        returns the completion cost the new choices add."""
        catalog, added = self.requester.catalog, 0.0
        for outcome, i in zip(run.outcomes, points):  # outcomes stop where the budget did
            if outcome is None:
                continue
            responses[i].append(outcome.response)
            usage = outcome.response.get("usage") or {}
            total = catalog.cost(outcome.request.model, usage)
            prompt = catalog.cost(outcome.request.model, {"prompt_tokens": usage.get("prompt_tokens", 0)})
            if prompt_cost is not None:
                prompt_cost[i] = prompt / max(1, len(outcome.request.parts))
            added += total - prompt
        return added

    def _score(self, responses: list[list[dict]]) -> list[dict]:
        """eval_func over every point's choices so far."""
        out = []
        for i, parts in enumerate(responses):
            if parts:
                texts = [text for r in parts for text in extract_text(r)]
                out.append(self.eval_func(texts, **self.data[i]))
        self._require_metric(out)
        return out

    def _too_expensive(self, t: TrialOutcome, choice: tuple) -> bool:
        if self.inference_budget is None or t.inference_cost <= self.inference_budget:
            return False
        self.pruner.remember(choice, t.config.get("max_tokens"), t.config.get("n", 1))
        return True

    def _stop(self, t: TrialOutcome, responses, reason: str, scored: list[dict] | None = None) -> None:
        """End a trial early; its metrics are those of what it answered (`scored` when already evaluated,
        so that an expensive eval_func, e.g. HumanEval's sandbox, does not run twice)."""
        t.pruned = reason
        if scored is None:
            scored = self._score(responses) if any(responses) else []
        t.metrics = aggregate(scored) if scored else {self.metric: self._worst()}
        if reason == "budget":
            self._say(f"optimization budget reached during trial {len(self.trials) + 1}: stopping")

    def _finish(self, t: TrialOutcome, per_point: list[dict]) -> None:
        t.metrics = aggregate(per_point)
        value = t.metrics[self.metric]
        if self.best is None or (value > self.best.metrics[self.metric] if self.mode == "max"
                                 else value < self.best.metrics[self.metric]):
            self.best = t

    def _require_metric(self, per_point: list[dict]) -> None:
        if per_point and self.metric not in per_point[0]:
            raise ConfigError(f"metric {self.metric!r} is not in eval_func's result (it returns {sorted(per_point[0])})")

    def _worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    # ---- reporting -----------------------------------------------------------------------------
    def _log(self, t: TrialOutcome) -> None:
        if not self.log_file_name:
            return
        line = {"trial": len(self.trials), "config": public_view(t.config), "metrics": t.metrics,
                "cost": t.charged, "spent": t.spent, "inference_cost": t.inference_cost,
                "tokens": {"prompt": t.prompt_tokens, "completion": t.completion_tokens},
                "cache_hits": t.cache_hits, "requests": t.requests, "data_used": t.data_used, "n_used": t.n_used,
                "wall_time": round(t.wall_time, 4), "pruned": t.pruned or False}
        with open(self.log_file_name, "a") as f:
            f.write(json.dumps(line, default=str) + "\n")

    def _preflight_line(self) -> str:
        p = self.preflight
        size = "continuous" if p["space_size"] == math.inf else f"{int(p['space_size'])} configs"
        budget = f"${self.optimization_budget:g}" if self.optimization_budget else "no optimization budget"
        covers = "" if p["trials_covered"] == math.inf else f", which {budget} covers {p['trials_covered']:.1f} times"
        return (f"preflight: search space {size}; {len(self.data)} data points; worst-case trial "
                f"${p['worst_trial_cost']:.6f}{covers}; inference budget "
                f"{'$%g/instance' % self.inference_budget if self.inference_budget else 'none'}")

    def _summary_line(self) -> str:
        pruned = sum(1 for t in self.trials if t.pruned)
        end = "stopped: optimization budget reached" if self.stopped_by_budget else "done"
        best = f"best {self.metric}={self.best.metrics[self.metric]:.4f}" if self.best else "no complete trial"
        return (f"tune {end}: {len(self.trials)} trials ({pruned} pruned), {best}; paid ${self.guard.paid:.6f}, "
                f"cache saved ${self.guard.saved:.6f}")

    def _say(self, line: str) -> None:
        if self.progress:
            tqdm.write(line, file=sys.stderr)
        else:
            logger.info(line)
