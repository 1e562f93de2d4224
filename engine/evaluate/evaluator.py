"""Evaluate one config over data points: requests run concurrently, results come back in data order.

Every point is prepared (templated, validated) before the first request, so bad input costs nothing.
Concurrency is asyncio with the async openai client: points in flight are bounded by a semaphore, and the
requests sent to each endpoint by its limit (engine/requests/providers/limiter.py: adaptive, or pinned by an
explicit `concurrency`); the cache, the cost and the order of results are exactly those of a sequential run.
"""
from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from tqdm.auto import tqdm

from ..requests.budget import BudgetGuard, worst_case_cost, worst_case_tokens
from ..core.numbers import is_number, plain
from ..core.stats import AGGREGATORS
from ..core.errors import BudgetExhausted, BudgetOverrunError, ConfigError
from ..requests.providers.limiter import PINNED
from ..requests.requester import Outcome, PreparedRequest, Requester, prepare



def extract_text(response: dict) -> list[str]:
    """The texts of all choices, for chat and text completion alike."""
    out = []
    for choice in response["choices"]:
        message = choice.get("message")
        out.append((message.get("content") if message else choice.get("text")) or "")
    return out


@dataclass
class EvalRun:
    """What evaluating a config over some points took and gave (outcomes in data order)."""

    outcomes: list[Outcome | None]  # None where the budget refused the request
    cost: float = 0.0  # what these responses cost at list price, cached ones included
    spent: float = 0.0  # dollars actually paid now (cache hits are free)
    cache_hits: int = 0
    requests: int = 0
    budget_exhausted: bool = False
    interrupted: bool = False
    error: BaseException | None = None  # the first failure; points not yet started are then skipped
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})


class Evaluator:
    """Sends one config's requests for many data points, concurrently, through cache and budget.

    `slots` bounds points in flight; several evaluators (a tune's trials in flight together) share one.
    `concurrency` None (or "auto"): each endpoint's limit adapts up to its model's ceiling, and points in flight
    are bounded by the highest ceiling of the config's models; a number bounds them and, unless `pinned` is
    False (a tune's trials under an adaptive limit), pins each endpoint's limit at it.
    `stop` ends the sending of new requests from outside (Ctrl-C during a tune): those in flight complete.
    """

    def __init__(self, requester: Requester, seed: int | str, concurrency: int | str | None = None,
                 budget: BudgetGuard | None = None, force_chat: bool = False, progress: bool = True,
                 slots: asyncio.Semaphore | None = None, stop: threading.Event | None = None,
                 pinned: bool | None = None):
        if concurrency == "auto":
            concurrency = None
        if concurrency is not None and (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                                        or concurrency < 1):
            raise ConfigError(f"concurrency must be a positive integer or 'auto', got {concurrency!r}")
        self.requester = requester
        self.seed = seed
        self.concurrency = concurrency
        self.pinned = concurrency if (pinned if pinned is not None else concurrency is not None) else None
        self.budget = budget
        self.force_chat = force_chat
        self.progress = progress
        self.slots = slots
        self.stop = stop or threading.Event()

    def prepare(self, config: Mapping[str, Any], data: Sequence[Mapping], indices: Sequence[int],
                offset: int = 0) -> list[list[PreparedRequest]]:
        catalog = self.requester.catalog
        return [prepare(config, data[i], catalog, self.seed, self.force_chat, index=i, offset=offset)
                for i in indices]

    def run(self, config: Mapping[str, Any], data: Sequence[Mapping], indices: Sequence[int] | None = None,
            use_cache: bool = True, offset: int = 0, desc: str = "evaluating") -> EvalRun:
        """`arun` from synchronous code. Ctrl-C stops new requests and waits for those in flight so that they
        are cached (a second Ctrl-C abandons them)."""
        def interrupted():
            self.stop.set()
            tqdm.write("interrupted: waiting for the requests in flight so that they are cached "
                       "(Ctrl-C again to abandon them)", file=sys.stderr)

        return self.requester.providers.loop.run(self.arun(config, data, indices, use_cache, offset, desc),
                                                 interrupted)

    async def arun(self, config: Mapping[str, Any], data: Sequence[Mapping], indices: Sequence[int] | None = None,
                   use_cache: bool = True, offset: int = 0, desc: str = "evaluating",
                   on_answer: Callable[[int, Outcome], None] | None = None) -> EvalRun:
        """Answers for `config` at `indices`, in data order; `on_answer(i, outcome)` as each lands."""
        indices = list(range(len(data))) if indices is None else list(indices)
        prepared = self.prepare(config, data, indices, offset)
        run = EvalRun(outcomes=[None] * len(prepared))
        reservations = self._admit(prepared, run)
        pin = PINNED.set(self.pinned)  # the tasks of these requests inherit it (limiter.py)
        try:
            await self._run(prepared, indices, use_cache, desc, run, reservations, on_answer)
        finally:
            PINNED.reset(pin)
            if self.budget is not None:  # what was reserved and never settled (skipped points, Ctrl-C)
                self.budget.release(sum(reservations))
        run.interrupted = self.stop.is_set()
        if run.error is not None:
            if isinstance(run.error, BudgetOverrunError):  # every request in flight is answered by now
                run.error.paid = run.spent
            raise run.error
        return run

    def _admit(self, prepared: list[list[PreparedRequest]], run: EvalRun) -> list[float]:
        """Reserve each point's worst case, in data order, while it fits. A point may fall back through
        every endpoint of its config_list (paying part of a fan-out on each), so all of them are counted."""
        if self.budget is None:
            return [0.0] * len(prepared)
        catalog = self.requester.catalog
        worst = [sum(worst_case_cost(catalog.get(r.model), payload) for r in requests for payload, _ in r.parts)
                 for requests in prepared]
        admitted = self.budget.admit(worst)
        if admitted < len(prepared):
            run.budget_exhausted = True
            del prepared[admitted:]
            del run.outcomes[admitted:]
        return worst[:admitted]

    async def _run(self, prepared: list[list[PreparedRequest]], indices: list[int], use_cache: bool, desc: str,
                   run: EvalRun, reservations: list[float], on_answer) -> None:
        slots = self.slots or asyncio.Semaphore(self.concurrency or self._ceiling(prepared))
        bar = tqdm(total=len(prepared), desc=desc, unit="pt", delay=1.0, leave=False, disable=not self.progress)

        def stopped() -> bool:
            return self.stop.is_set() or run.error is not None

        async def one(i: int, requests: list[PreparedRequest]) -> None:
            if stopped():
                return
            async with slots:
                if stopped():
                    return
                try:
                    outcome = await self.requester.arun(requests, use_cache, self.budget)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # noqa: BLE001 - recorded, raised once the others are done
                    paid = getattr(exc, "spent", 0.0)
                    run.spent += paid
                    if self.budget is not None:
                        self.budget.settle(reservations[i], paid, paid)
                        reservations[i] = 0.0
                    if isinstance(exc, BudgetExhausted):  # no room left to retry: the budget ends the run here
                        run.budget_exhausted = True
                    else:
                        run.error = run.error or exc
                    return
            run.outcomes[i] = outcome
            run.spent += outcome.spent
            run.cache_hits += outcome.cache_hits
            run.requests += len(outcome.request.parts)
            usage = outcome.response.get("usage") or {}
            for k in run.usage:
                run.usage[k] += usage.get(k, 0) or 0
            cost = self.requester.cost(outcome.request.model, outcome.response)
            run.cost += cost
            if self.budget is not None:
                if self.budget.limit is not None and cost > reservations[i] * (1 + 1e-9):
                    run.error = run.error or self._overrun(outcome, reservations[i], cost)
                self.budget.settle(reservations[i], cost, outcome.spent)
                reservations[i] = 0.0
            if on_answer is not None:
                on_answer(indices[i], outcome)
            bar.update(1)
            bar.set_postfix(spent=f"${run.spent:.5f}", hits=run.cache_hits, refresh=False)

        try:
            await asyncio.gather(*(one(i, r) for i, r in enumerate(prepared)))
        finally:
            bar.close()

    def _ceiling(self, prepared: list[list[PreparedRequest]]) -> int:
        """The highest ceiling of the endpoints these requests go to (their models' concurrency.ceiling)."""
        return max((r.endpoint.limits[1] for requests in prepared for r in requests if r.endpoint.limits),
                   default=8)

    def _overrun(self, outcome: Outcome, reserved: float, cost: float) -> BudgetOverrunError:
        """The answer cost more than the bound its reservation rested on: say by how much, and where."""
        request = outcome.request
        spec = self.requester.catalog.get(request.model)
        bounds = [worst_case_tokens(spec, payload) for payload, _ in request.parts]
        usage = outcome.response.get("usage") or {}
        return BudgetOverrunError(
            f"{request.endpoint.describe()}: an answer reported {usage.get('prompt_tokens')} prompt + "
            f"{usage.get('completion_tokens')} completion tokens (${cost:.6f}); its reservation assumed at most "
            f"{sum(b.prompt for b in bounds)} + {sum(b.completion for b in bounds)} (${reserved:.6f}). The bound is "
            f"wrong for this model: raise "
            f"prompt_overhead_tokens or completion_margin_tokens in conf/model/{request.model}.yaml. The run "
            "stops here so that the budget stays a cap.")


def aggregate(per_instance: list[dict], agg_method: str | Callable | dict = "avg") -> dict:
    """Aggregate per-point metrics: a named method, one callable for every metric, or {name: callable}.

    With a dict, a key that is a metric's name aggregates that metric; a key `<prefix>_<metric>`
    (e.g. `median_success`) aggregates `<metric>` under the new name.
    """
    if not per_instance:
        return {}
    metrics = [k for k, v in per_instance[0].items() if is_number(v)]
    values = {k: [float(plain(r[k])) for r in per_instance if is_number(r.get(k))] for k in metrics}
    if isinstance(agg_method, str):
        fn = AGGREGATORS.get(agg_method)
        if fn is None:
            raise ConfigError(f"agg_method {agg_method!r} is not one of {sorted(AGGREGATORS)}")
        return {k: fn(v) for k, v in values.items()}
    if callable(agg_method):
        return {k: plain(agg_method(v)) for k, v in values.items()}
    if isinstance(agg_method, dict):
        out = {}
        for name, fn in agg_method.items():
            if not callable(fn):
                raise ConfigError(f"agg_method[{name!r}] must be callable")
            suffixes = [m for m in metrics if name.endswith("_" + m)]
            source = name if name in values else max(suffixes, key=len, default=None)
            if source is None:
                raise ConfigError(f"agg_method key {name!r} names no metric (metrics: {metrics})")
            out[name] = plain(fn(values[source]))
        return out
    raise ConfigError(f"agg_method must be a str, a callable or a dict of callables, got {type(agg_method).__name__}")


def score(eval_func: Callable, texts: list[str], point: Mapping, index: int) -> dict:
    """`eval_func(texts, **point)`, which must return a dict of metrics."""
    metrics = eval_func(texts, **point)
    if not isinstance(metrics, dict):
        raise ConfigError(f"eval_func must return a dict of metrics, got {type(metrics).__name__} for point {index}")
    return metrics


def evaluate_points(run: EvalRun, data: Sequence[Mapping], indices: Sequence[int], eval_func: Callable) -> list[dict]:
    """Apply `eval_func(texts, **point)` to every answered point, in data order."""
    return [score(eval_func, extract_text(outcome.response), data[i], i)
            for outcome, i in zip(run.outcomes, indices) if outcome is not None]  # outcomes stop at the budget
