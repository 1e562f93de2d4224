"""`test`: evaluate one config over data with an eval function and aggregate the metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ..requests.budget import BudgetGuard, worst_case_cost
from ..core.errors import BudgetError, ConfigError
from .evaluator import Evaluator, aggregate, evaluate_points, extract_text
from ..requests.requester import Requester, prepare
from ..core.templates import check_text


def worst_case(requester: Requester, seed, data: Sequence[Mapping], config: Mapping, force_chat: bool = False
               ) -> float:
    """The most testing `config` on `data` can cost: every point, every endpoint, each request at its worst."""
    catalog, total = requester.catalog, 0.0
    for i, point in enumerate(data):
        for request in prepare(config, point, catalog, seed, force_chat, index=i):
            total += sum(worst_case_cost(catalog.get(request.model), payload) for payload, _ in request.parts)
    return total


@dataclass
class TestRun:
    """One config over data: eval_func's metrics (aggregated) and the accounting, kept apart so that a metric
    named `cost` or `requests` is never overwritten by the engine's own figures."""

    __test__ = False  # not a pytest test class, whatever module imports it

    metrics: dict
    accounting: dict  # cost (list price), inference_cost (per instance), spent, saved, cache_hits, requests,
    #                   unanswered_requests (timed out after sending: may have been billed), unanswered_usd
    per_instance: list[dict] = field(default_factory=list)
    responses: list = field(default_factory=list)  # each point's choices, as texts
    costs: list = field(default_factory=list)  # each point's responses at list price (USD)

    def merged(self) -> dict:
        """The seed API's one dict: the metrics, then the accounting figures. An accounting figure whose name
        a metric already has goes in as `engine.<name>` instead (the metric keeps its own value)."""
        out = dict(self.metrics)
        for key, value in self.accounting.items():
            out[f"engine.{key}" if key in self.metrics else key] = value
        return out


def run_test(requester: Requester, seed, data: Sequence[Mapping], config: Mapping, eval_func: Callable,
             use_cache: bool = True, agg_method="avg", concurrency: int | None = None, force_chat: bool = False,
             progress: bool = True, budget: float | None = None) -> TestRun:
    """Evaluate `config` on every point of `data` and aggregate eval_func's metrics.

    With `budget` (dollars), the worst case over all of `data` must fit in it before a request is sent (a
    BudgetError says both figures), and it caps what is spent.
    """
    if not data:
        raise ConfigError("data is empty: nothing to test")
    check_text(data)
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a dict (or a models:/ URI for Completion.test), got {type(config).__name__}")
    if budget is not None:
        worst = worst_case(requester, seed, data, config, force_chat)
        if worst > budget:
            raise BudgetError(f"testing this config on {len(data)} points could cost up to ${worst:.6f} (n="
                              f"{config.get('n', 1)}, max_tokens={config.get('max_tokens')}, each request at its "
                              f"worst case), above the cap of ${budget:.6f}: raise budget.test to ${worst:.6f} or more")
    money = BudgetGuard(budget)  # without a cap it still counts what timed-out attempts may have cost
    run = Evaluator(requester, seed, concurrency, money, force_chat, progress).run(
        config, data, use_cache=use_cache, desc="test")
    per_instance = evaluate_points(run, data, range(len(data)), eval_func)
    accounting = {"cost": run.cost, "inference_cost": run.cost / len(data), "spent": run.spent,
                  "saved": run.cost - run.spent, "cache_hits": run.cache_hits, "requests": run.requests,
                  "unanswered_requests": money.unanswered_requests, "unanswered_usd": money.unanswered}
    answered = [o for o in run.outcomes if o is not None]  # outcomes stop at the budget
    return TestRun(aggregate(per_instance, agg_method), accounting, per_instance,
                   [extract_text(o.response) for o in answered],
                   [requester.cost(o.request.model, o.response) for o in answered])


def evaluate_config(requester: Requester, seed, data: Sequence[Mapping], config: Mapping, eval_func: Callable,
                    use_cache: bool = True, agg_method="avg", return_details: bool = False, concurrency=None,
                    force_chat: bool = False, progress: bool = True, budget: float | None = None):
    """The seed API's `test`: `TestRun.merged()` (metrics plus `cost`, `inference_cost`, ...); with
    `return_details`, (merged, per_instance_results, responses) as the seed library returned them."""
    result = run_test(requester, seed, data, config, eval_func, use_cache, agg_method, concurrency, force_chat,
                      progress, budget)
    if return_details:
        return result.merged(), result.per_instance, result.responses
    return result.merged()
