"""EcoOptiGen's evaluation of one config (Wang et al., 2023), built on one step.

Stage 1 asks one completion per point on a growing subset of the data; stage 2 asks a doubling number of
completions on all of it, reusing those already answered. Every request goes through the same `_step`: ask
some points for more completions, add what came back to the trial, then decide whether it goes on. A trial
stops as soon as the budget refuses the next point, its estimated cost per instance exceeds the inference
budget, or (a 0/1 metric, one completion) even perfect answers on the points left could not beat the best.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..evaluation import EvalRun, Evaluator, aggregate, evaluate_points, extract_text, score
from ..errors import ConfigError
from ..models import ModelCatalog
from ..records import TrialRecord
from .pruning import CostPruner, cannot_beat, estimate_inference_cost, n_ladder, subset_sizes
from .space import SearchSpace
from .spec import TuneSpec


@dataclass
class _Answers:
    """What a trial has received so far, per point."""

    responses: list[list[dict]]
    prompt_cost: list[float | None]  # one request's prompt cost, per point answered
    completion_cost: float = 0.0
    choices: int = 0
    have: int = 0  # completions per point asked so far
    scored: list[dict] = field(default_factory=list)  # stage 1 with n=1: eval_func results, in data order

    def add(self, run: EvalRun, points, catalog: ModelCatalog) -> None:
        for outcome, i in zip(run.outcomes, points):  # outcomes stop where the budget did
            if outcome is None:
                continue
            self.responses[i].append(outcome.response)
            usage = outcome.response.get("usage") or {}
            whole = catalog.cost(outcome.request.model, usage)
            prompt = catalog.cost(outcome.request.model, {"prompt_tokens": usage.get("prompt_tokens", 0)})
            if self.prompt_cost[i] is None:
                self.prompt_cost[i] = prompt / max(1, len(outcome.request.parts))
            self.completion_cost += whole - prompt
            self.choices += len(outcome.response.get("choices") or ())

    def inference_cost(self, n: int, fanout: bool) -> float:
        """Cost per instance of the full config, from what was measured so far."""
        prompts = [c for c in self.prompt_cost if c is not None]
        return estimate_inference_cost(sum(prompts) / max(1, len(prompts)),
                                       self.completion_cost / max(1, self.choices), n, fanout)


class StageRunner:
    """Runs trials for one tune; the pruning table it shares with later trials is the tune's."""

    def __init__(self, spec: TuneSpec, space: SearchSpace, evaluator: Evaluator, catalog: ModelCatalog):
        self.spec = spec
        self.space = space
        self.evaluator = evaluator
        self.catalog = catalog
        self.pruner = CostPruner()

    def evaluate(self, record: TrialRecord, best: float | None, label: str) -> None:
        """Fill `record` with what evaluating its config measured; `best` is the metric to beat."""
        config, n = record.config, record.config.get("n", 1)
        if self.pruner.known_too_expensive(self.space.choice_key(config), config.get("max_tokens"), n):
            record.pruned = "cost"  # a smaller config with this model and prompt was already too expensive
            return
        total = len(self.spec.data)
        answers = _Answers([[] for _ in range(total)], [None] * total)
        for size in subset_sizes(total, self.spec.initial_subset):
            points = range(record.data_used, size)
            run = self._step(record, answers, points, 1, label, first=True)
            if run is None:
                return
            if n == 1:
                answers.scored += [self._checked(m) for m in evaluate_points(run, self.spec.data, points,
                                                                             self.spec.eval_func)]
                values = [float(p[self.spec.metric]) for p in answers.scored]
                if cannot_beat(values, total, best, self.spec.mode):
                    return self._stop(record, answers, "metric")
        for step in n_ladder(n)[1:]:
            if self._step(record, answers, range(total), step - answers.have, f"{label} n={step}", first=False) is None:
                return
        record.n_used = n
        record.metrics = aggregate(answers.scored if n == 1 else self._score_all(answers))

    def _step(self, record: TrialRecord, answers: _Answers, points: range, more: int, label: str,
              first: bool) -> EvalRun | None:
        """Ask `more` completions of each point in `points` (`first`: new points get their first one; else
        answered points get their next ones) and add them to the trial; None when the trial stops here."""
        config = record.config
        run = self.evaluator.run(dict(config, n=more), self.spec.data, points, offset=0 if first else answers.have,
                                 desc=label)
        _absorb(record, run)
        answers.add(run, points, self.catalog)
        if first:
            record.data_used += sum(o is not None for o in run.outcomes)
            answers.have = 1
        else:
            answers.have += more
            record.n_used = answers.have
        if run.budget_exhausted:
            return self._stop(record, answers, "budget")
        n = config.get("n", 1)
        record.inference_cost_usd_per_instance = answers.inference_cost(
            n, self.catalog.get(config["model"]).ignores_n)
        budget = self.spec.inference_budget
        if budget is not None and record.inference_cost_usd_per_instance > budget:
            self.pruner.remember(self.space.choice_key(config), config.get("max_tokens"), n)
            return self._stop(record, answers, "cost")
        return run

    def _stop(self, record: TrialRecord, answers: _Answers, reason: str) -> None:
        """End a trial early; its metrics are those of what it answered (scored once: an eval_func may be
        expensive, e.g. HumanEval's sandbox)."""
        record.pruned = reason
        scored = answers.scored if reason == "metric" else self._score_all(answers)
        record.metrics = aggregate(scored) if scored else {}

    def _score_all(self, answers: _Answers) -> list[dict]:
        """eval_func over every point's choices so far."""
        return [self._checked(score(self.spec.eval_func, [t for r in parts for t in extract_text(r)],
                                    self.spec.data[i], i))
                for i, parts in enumerate(answers.responses) if parts]

    def _checked(self, metrics: dict) -> dict:
        if self.spec.metric not in metrics:
            raise ConfigError(f"metric {self.spec.metric!r} is not in eval_func's result (it returns {sorted(metrics)})")
        return metrics


def _absorb(record: TrialRecord, run: EvalRun) -> None:
    record.paid_usd += run.spent
    record.cost_usd += run.cost
    record.cache_hits += run.cache_hits
    record.requests += run.requests
    record.prompt_tokens += run.usage["prompt_tokens"]
    record.completion_tokens += run.usage["completion_tokens"]
