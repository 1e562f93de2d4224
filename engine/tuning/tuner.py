"""`tune`: a cost-aware FLAML BlendSearch over inference settings under two budgets, trials in flight together.

A `Tuner` is made for one tune and holds all of its state (money, pruning table, best so far, trials), so two
tunes in one process or in threads never see each other's. It composes the parts: the `TuneSpec` (what was
asked), the preflight (what it can cost), the `TrialScheduler` (which trials run when), the `StageRunner` (how
one config is evaluated) and the `TrialReporter` (what is said and logged); FLAML decides what to try next.
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..requests.budget import BudgetGuard
from ..core.errors import (AuthenticationError, BudgetError, BudgetOverrunError, EngineError, ProviderError,
                           SearchFailedError)
from ..evaluate.evaluator import Evaluator
from ..core.records import TrialRecord
from ..requests.requester import Requester
from .preflight import dry_run_eval_func, estimate, trial_worst_case
from .pruning import CostPruner
from .reporter import TrialReporter
from .flaml_adapter import BlendSearch, ExperimentAnalysis, SequentialTrialRunner, quiet_search_logs
from .scheduler import OrderedAdmission, Snapshot, TrialScheduler
from .selection import Choice, Leader, choose
from .space import build_space, starting_points
from .spec import TuneSpec
from .stages import EvalFuncInterrupted, StageRunner

MAX_FREE_PRUNES = 25  # with num_samples=-1, a search whose space is all pruned would otherwise never end
MAX_BAD_ANSWER_TRIALS = 3  # trials in a row ended by answers that cannot be used (each kept at its worst case)


class Tuner:
    """One tune: everything is checked before a cent is spent, then FLAML searches under both budgets."""

    def __init__(self, spec: TuneSpec, requester: Requester, seed: int | str,
                 on_trial: Callable[[TrialRecord], None] | None = None):
        self.spec = spec
        self.requester = requester
        self.seed = seed
        self.space = build_space(spec.space)
        spec.resolve(highest_ceiling(self.space, requester.catalog))  # concurrency auto: the models' ceiling
        self.guard = BudgetGuard(spec.optimization_budget)
        self.pruner = CostPruner()
        self.reporter = TrialReporter(spec.progress, spec.log_file_name, on_trial,
                                      spec.num_samples if spec.num_samples > 0 else None)
        self.trials: list[TrialRecord] = []
        self.leader = Leader(spec.metric, spec.mode, spec.selection, len(spec.data))  # best so far, for pruning
        self.choice: Choice | None = None  # what the tune ships, once it has ended (see selection.py)
        self.stopped_by_budget = False
        self._free_prunes = 0  # consecutive trials pruned from the table alone: they cost the search nothing
        self._bad_answers = 0  # consecutive trials ended by a 200 the engine could not use
        self._stop = threading.Event()  # Ctrl-C: no new request, no new trial
        self._remote = None  # RayTrials when spec.ray asks for Ray workers
        self.preflight = estimate(spec, self.space, requester.catalog, seed)
        dry_run_eval_func(spec)

    @property
    def best(self) -> TrialRecord | None:
        """The chosen trial once the tune has ended (the cheapest of the equally good), else the leader."""
        return self.choice.trial if self.choice else self.leader.trial

    @property
    def best_metric(self) -> float | None:
        return self.best.metrics[self.spec.metric] if self.best else None

    def run(self) -> tuple[dict, Any]:
        """Search until a budget or num_samples ends it; returns (best config, FLAML's analysis)."""
        spec = self.spec
        self.reporter.say(self.preflight.line(spec))
        constraints = [("inference_cost_usd_per_instance", "<=", spec.inference_budget)] \
            if spec.inference_budget else None

        def interrupted():
            self._stop.set()
            self.reporter.say("interrupted: no new request; waiting for those in flight so that they are cached "
                              "(Ctrl-C again to abandon them)")

        if spec.ray is not None:
            from .ray_trials import RayTrials  # Ray is imported only by those who ask for it
            self._remote = RayTrials(spec.ray, spec, self.requester, self.seed)
            self.reporter.say(f"trials on Ray: {spec.trials} at once, {self._remote.describe()}")
        with self.reporter, quiet_search_logs(), ThreadPoolExecutor(1, thread_name_prefix="eval_func") as scorer:
            search = BlendSearch(metric=spec.metric, mode=spec.mode, space=self.space.space, cost_attr="cost_usd",
                                 cost_budget=spec.optimization_budget, metric_constraints=constraints,
                                 points_to_evaluate=starting_points(self.space, spec.metric, spec.mode))
            search.set_search_properties(spec.metric, spec.mode, None,
                                         **({"num_samples": spec.num_samples} if spec.num_samples > 0 else {}))
            runner = SequentialTrialRunner(search_alg=search, scheduler=None, metric=spec.metric, mode=spec.mode)
            self._scorer = scorer
            try:
                self.requester.providers.loop.run(self._search(runner), interrupted)
            except EvalFuncInterrupted:
                raise KeyboardInterrupt from None
            except BudgetOverrunError as exc:  # the other trials' requests in flight have settled by now
                exc.paid = self.guard.paid
                raise
        self.choice = choose(self.trials, spec.metric, spec.mode, spec.selection, len(spec.data), spec.aggregate)
        self.reporter.say(self._summary_line())
        failed = [t for t in self.trials if t.pruned == "error"]
        if self.best is None and failed and len(failed) == len(self.trials) and not self.stopped_by_budget:
            raise SearchFailedError(f"every trial failed ({len(failed)} of {len(failed)}), none for lack of money "
                                    f"(paid ${self.guard.paid:.6f}); the last: {failed[-1].error}")
        if self.best is None:
            raise BudgetError("no config was evaluated in full within the budgets "
                              f"(trials: {len(self.trials)}, spent ${self.guard.paid:.6f}); "
                              "raise optimization_budget or inference_budget")
        return self.best_config(), ExperimentAnalysis(runner.get_trials(), metric=spec.metric, mode=spec.mode)

    def best_config(self) -> dict:
        return dict(self.best.config) if self.best else {}

    async def _search(self, runner) -> None:
        self._slots = asyncio.Semaphore(self.spec.concurrency)  # requests in flight, across all trials
        self._admission = OrderedAdmission(self.guard)
        self._stages = StageRunner(self.spec, self.requester.catalog,
                                   lambda fn, *args: asyncio.get_running_loop().run_in_executor(self._scorer, fn, *args))
        await TrialScheduler(runner, self.spec.trials, self.spec.num_samples, self._snapshot, self._trial,
                             self._report, self._stop.set).run()

    def _snapshot(self, sample: dict) -> Snapshot:
        config = self.space.decode(sample)
        return Snapshot(self.leader.bar, self.pruner.known_too_expensive(
            self.space.choice_key(config), config.get("max_tokens"), config.get("n", 1)))

    async def _trial(self, number: int, sample: dict, snapshot: Snapshot) -> TrialRecord | None:
        """One trial, from its admission to its end; None when the budget refuses it (the search ends)."""
        record = TrialRecord(number=number, config=self.space.decode(sample), started_at=time.time())
        if snapshot.too_expensive:  # a smaller config with this model and prompt was already too expensive
            await self._admission.pass_turn(number)
            record.pruned, record.ended_at = "cost", time.time()
            return record
        worst = trial_worst_case(record.config, self.spec, self.requester.catalog, self.seed)
        allowance = await self._admission.admit(number, worst)
        if allowance is None or self._stop.is_set():
            if allowance is not None:
                await self._admission.settle(number, worst, allowance)
            elif not self.stopped_by_budget:
                self.stopped_by_budget = True
                left = self.guard.limit - self.guard.charged - self.guard.unanswered - self.guard.reserved
                self.reporter.say(f"optimization budget reached: trial {number} could cost up to ${worst:.6f} and "
                                  f"${left:.6f} is left; stopping")
            return None
        try:
            if self._remote is not None:
                await self._remote.evaluate(record, allowance, snapshot.best)
            else:
                evaluator = Evaluator(self.requester, self.seed, self.spec.concurrency, allowance,
                                      self.spec.force_chat, self.spec.progress and self.spec.trials == 1,
                                      slots=self._slots, stop=self._stop, pinned=self.spec.pinned)
                await self._stages.evaluate(record, evaluator, snapshot.best, f"trial {number}")
            self._bad_answers = 0
        except ProviderError as exc:
            if isinstance(exc, AuthenticationError) or exc.retryable:
                raise  # a refused key or an endpoint that stays down: no other config will do better
            self._bad_answers = self._bad_answers + 1 if exc.possibly_billed else 0
            if self._bad_answers >= MAX_BAD_ANSWER_TRIALS:
                raise ProviderError(f"{self._bad_answers} trials in a row got answers that cannot be used, each "
                                    "counted at its worst case as possibly billed; stopping. The last: "
                                    f"{str(exc).removeprefix(exc.endpoint + ': ')}", exc.endpoint) from None
            record.pruned, record.error = "error", str(exc)  # e.g. a prompt too long for the model
            self.reporter.say(f"trial {number} failed and is skipped: {exc}")
        finally:
            record.ended_at = time.time()
            await self._admission.settle(number, worst, allowance)
        return record

    def _report(self, record: TrialRecord) -> dict | None:
        """A finished trial, in suggestion order: logged, remembered, and its result for FLAML (None: stop)."""
        self.trials.append(record)
        self.leader.offer(record)
        if record.pruned == "cost" and record.requests:
            self.pruner.remember(self.space.choice_key(record.config), record.config.get("max_tokens"),
                                 record.config.get("n", 1))
        self.reporter.trial(record, self.best_metric, self.guard.charged, self.guard.paid)
        if record.pruned in ("budget", "interrupted"):
            self.stopped_by_budget = record.pruned == "budget"
            return None
        self._free_prunes = self._free_prunes + 1 if record.pruned and not record.requests else 0
        if self._free_prunes >= MAX_FREE_PRUNES:
            self.reporter.say(f"{MAX_FREE_PRUNES} trials in a row were pruned without a request: every config "
                              "left is known to exceed the inference budget; stopping")
            return None
        return record.for_search(self.spec.metric, self.spec.mode)

    def choice_line(self) -> str:
        """`chose trial 12: success 1.000 ± 0.000 [...], $0.0050 per 1K instances (cheapest of 30 ...)`."""
        trial, metric = self.choice.trial, self.spec.metric
        figure = trial.interval.text() if trial.interval else f"{trial.metrics[metric]:.4f}"
        return (f"chose trial {trial.number}: {metric} {figure}, ${trial.inference_cost_usd_per_instance * 1000:.4f} "
                f"per 1K instances ({self.choice.reason})")

    def _summary_line(self) -> str:
        pruned = sum(1 for t in self.trials if t.pruned)
        end = "stopped: optimization budget reached" if self.stopped_by_budget else "done"
        best = self.choice_line() if self.choice else "no complete trial"
        unanswered = (f" (and up to ${self.guard.unanswered:.6f} possibly billed for {self.guard.unanswered_requests}"
                      " attempts that got no answer)") if self.guard.unanswered_requests else ""
        unkept = self.requester.caches.unkept.line()
        return (f"tune {end}: {len(self.trials)} trials ({pruned} pruned), {best}; paid ${self.guard.paid:.6f}"
                f"{unanswered}, cache saved ${self.guard.saved:.6f}" + (f"; {unkept}" if unkept else ""))


def highest_ceiling(space, catalog) -> int:
    """The highest `concurrency.ceiling` of the models a search space names (conf/model/*.yaml)."""
    ceilings = []
    for model in space.models:
        entry = (space.entries.get(model) or [{}])[0]
        try:
            ceilings.append(catalog.get(model, entry).concurrency_limits()[1])
        except EngineError:  # an unknown model is said by the preflight, in its own words
            continue
    return max(ceilings, default=8)
