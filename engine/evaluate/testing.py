"""`test`: evaluate one config over data with an eval function and aggregate the metrics."""
from __future__ import annotations

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


def evaluate_config(requester: Requester, seed, data: Sequence[Mapping], config: Mapping, eval_func: Callable,
                    use_cache: bool = True, agg_method="avg", return_details: bool = False, concurrency: int = 8,
                    force_chat: bool = False, progress: bool = True, budget: float | None = None):
    """Aggregated metrics plus `cost` (total, list price), `inference_cost` (per instance), and what was
    `spent` now, `saved` by the cache, `cache_hits` and `requests`.

    With `budget` (dollars), the worst case over all of `data` must fit in it before a request is sent (a
    BudgetError says both figures), and it caps what is spent.

    With `return_details`, returns (aggregated, per_instance_results, responses) where responses are
    the texts of each point's choices, as the seed library did.
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
    result = aggregate(per_instance, agg_method)
    result["cost"] = run.cost
    result["inference_cost"] = run.cost / len(data)
    result["spent"] = run.spent
    result["saved"] = run.cost - run.spent
    result["cache_hits"] = run.cache_hits
    result["requests"] = run.requests
    result["unanswered_requests"] = money.unanswered_requests  # timed out after sending: may have been billed
    result["unanswered_usd"] = money.unanswered  # their worst case
    if return_details:
        return result, per_instance, [extract_text(o.response) for o in run.outcomes]
    return result
