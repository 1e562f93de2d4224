"""EcoOptiGen's evaluation of one config (Wang et al., 2023), built on one step.

Stage 1 asks one completion per point on a growing subset of the data; stage 2 asks a doubling number of
completions on all of it, reusing those already answered. Every request goes through the same `_step`: ask
some points for more completions, add what came back to the trial, then decide whether it goes on. A trial
stops as soon as its estimated cost per instance exceeds the inference budget, or (a 0/1 metric, one
completion) even perfect answers on the points left could not beat the best.

Decisions are taken at step boundaries only, on everything the step asked for: which requests a trial sends
never depends on which answer came back first, so a rerun sends nothing the first run did not (and replays
from the cache for $0). Within a step, points are scored as their answers land, in a worker thread, so the
step ends when its slowest answer does, not after scoring them all; other trials keep the request slots busy.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..core.errors import ConfigError
from ..evaluate.evaluator import EvalRun, Evaluator, aggregate, extract_text, score
from ..core.models import ModelCatalog
from ..core.records import TrialRecord
from ..requests.requester import Outcome
from ..core.stats import estimate, with_functions
from .pruning import cannot_beat, estimate_inference_cost, n_ladder, subset_sizes
from .spec import TuneSpec


@dataclass
class _Answers:
    """What a trial has received so far, per point."""

    responses: list[list[dict]]
    prompt_cost: list[float | None]  # one request's prompt cost, per point answered
    point_cost: list[float] = field(default_factory=list)  # list price of each point's responses
    completion_cost: float = 0.0
    choices: int = 0
    have: int = 0  # completions per point asked so far
    scoring: dict = field(default_factory=dict)  # stage 1 with n=1: point -> its eval_func result (a future)

    def add(self, outcome: Outcome, i: int, catalog: ModelCatalog) -> None:
        self.responses[i].append(outcome.response)
        usage = outcome.response.get("usage") or {}
        whole = catalog.cost(outcome.request.model, usage)
        prompt = catalog.cost(outcome.request.model, {"prompt_tokens": usage.get("prompt_tokens", 0)})
        if self.prompt_cost[i] is None:
            self.prompt_cost[i] = prompt / max(1, len(outcome.request.parts))
        self.completion_cost += whole - prompt
        if self.point_cost:
            self.point_cost[i] += whole
        self.choices += len(outcome.response.get("choices") or ())

    def inference_cost(self, n: int, fanout: bool) -> float:
        """Cost per instance of the full config, from what was measured so far."""
        prompts = [c for c in self.prompt_cost if c is not None]
        return estimate_inference_cost(sum(prompts) / max(1, len(prompts)),
                                       self.completion_cost / max(1, self.choices), n, fanout)


class StageRunner:
    """Evaluates configs for one tune; `score` runs eval_func off the event loop (one worker thread)."""

    def __init__(self, spec: TuneSpec, catalog: ModelCatalog, score_in_thread):
        self.spec = spec
        self.catalog = catalog
        self._in_thread = score_in_thread

    async def evaluate(self, record: TrialRecord, evaluator: Evaluator, best: float | None, label: str) -> None:
        """Fill `record` with what evaluating its config measured; `best` is the metric to beat."""
        n = record.config.get("n", 1)
        total = len(self.spec.data)
        answers = _Answers([[] for _ in range(total)], [None] * total, [0.0] * total)
        for size in subset_sizes(total):
            points = range(record.data_used, size)
            if not await self._step(record, evaluator, answers, points, 1, label, first=True):
                return
            if n == 1:
                scored = [await answers.scoring[i] for i in range(size) if i in answers.scoring]
                values = self._values(scored)
                if cannot_beat(values, total, best, self.spec.mode, self.spec.aggregate):
                    return self._stop(record, scored, "metric")
        for step in n_ladder(n)[1:]:
            if not await self._step(record, evaluator, answers, range(total), step - answers.have,
                                     f"{label} n={step}", first=False):
                return
        record.n_used = n
        scored = await self._scored(answers, n)
        self._measure(record, scored)
        # a complete trial keeps what each point got (answers, metrics, cost): the per-item table of the one
        # chosen is logged from it, without asking anything again
        record.details = [{"answers": [t for r in parts for t in extract_text(r)], "metrics": metrics,
                           "cost_usd": cost}
                          for parts, metrics, cost in zip(answers.responses, scored, answers.point_cost)]

    async def _step(self, record: TrialRecord, evaluator: Evaluator, answers: _Answers, points: range, more: int,
                    label: str, first: bool) -> bool:
        """Ask `more` completions of each point in `points` (`first`: new points get their first one; else
        answered points get their next ones) and add them to the trial; False when the trial stops here."""
        config, n = record.config, record.config.get("n", 1)

        def landed(i: int, outcome: Outcome) -> None:
            answers.add(outcome, i, self.catalog)
            if first and n == 1:  # its score is final: start it now
                answers.scoring[i] = self._score([outcome.response], i)

        run = await evaluator.arun(dict(config, n=more), self.spec.data, points,
                                   offset=0 if first else answers.have, desc=label, on_answer=landed)
        _absorb(record, run)
        if first:
            record.data_used += sum(o is not None for o in run.outcomes)
            answers.have = 1
        else:
            answers.have += more
            record.n_used = answers.have
        if run.interrupted or run.budget_exhausted:
            self._stop(record, await self._scored(answers, n), "interrupted" if run.interrupted else "budget")
            return False
        record.inference_cost_usd_per_instance = answers.inference_cost(
            n, self.catalog.get(config["model"]).ignores_n)
        budget = self.spec.inference_budget
        if budget is not None and record.inference_cost_usd_per_instance > budget:
            self._stop(record, await self._scored(answers, n), "cost")
            return False
        return True

    def _stop(self, record: TrialRecord, scored: list[dict], reason: str) -> None:
        """End a trial early; its metrics are those of what it answered."""
        record.pruned = reason
        self._measure(record, scored)

    def _measure(self, record: TrialRecord, scored: list[dict]) -> None:
        """The trial's metrics over the points it answered (in data order), the tuned metric per point, and
        that metric's standard error and interval (`success_se`, `success_ci_low`, `success_ci_high`)."""
        metric, agg = self.spec.metric, self.spec.aggregate
        record.metrics = aggregate(scored, with_functions(self.spec.agg_method)) if scored else {}
        record.scores = self._values(scored)
        record.interval = estimate(record.scores, agg)  # of the aggregate tuned (agg_method)
        if record.interval is not None:
            for key, value in record.interval.as_metrics(metric).items():
                record.metrics.setdefault(key, value)  # an eval_func metric of that name is left as it is

    def _values(self, scored: list[dict]) -> list[float]:
        """The per-point values the tuned metric aggregates (its own, or those of the metric it is made from)."""
        return [float(p[self.spec.aggregate.source(p)]) for p in scored]

    async def _scored(self, answers: _Answers, n: int) -> list[dict]:
        """eval_func's result for every answered point: the ones scored as they landed (stage 1 with n=1),
        else over every point's choices so far."""
        if n == 1 and answers.scoring:
            return [await answers.scoring[i] for i in sorted(answers.scoring)]
        return list(await asyncio.gather(*(self._score(parts, i) for i, parts in enumerate(answers.responses)
                                           if parts)))

    def _score(self, responses: list[dict], i: int) -> asyncio.Future:
        texts = [t for r in responses for t in extract_text(r)]
        future = asyncio.ensure_future(self._in_thread(self._checked_score, texts, i))
        # a trial that ends early (another point failed) may never await it: its error is not news then
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    def _checked_score(self, texts: list[str], i: int) -> dict:
        try:
            metrics = score(self.spec.eval_func, texts, self.spec.data[i], i)
        except KeyboardInterrupt:  # raised in the scoring thread, it would kill the event loop's thread
            raise EvalFuncInterrupted() from None
        if self.spec.aggregate.source(metrics) is None:
            raise ConfigError(f"metric {self.spec.metric!r} is not in eval_func's result (it returns {sorted(metrics)})")
        return metrics


class EvalFuncInterrupted(Exception):
    """eval_func raised KeyboardInterrupt in the scoring thread; the tune raises it again in the caller's."""


def _absorb(record: TrialRecord, run: EvalRun) -> None:
    record.paid_usd += run.spent
    record.cost_usd += run.cost
    record.cache_hits += run.cache_hits
    record.requests += run.requests
    record.prompt_tokens += run.usage["prompt_tokens"]
    record.completion_tokens += run.usage["completion_tokens"]
