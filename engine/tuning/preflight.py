"""Before a tune spends anything: the size of the space, the worst-case cost of one trial over the data, how
many such trials the optimization budget covers, and the checks that raise (a template key missing from a
point, a budget below the cheapest request, a metric eval_func never returns)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..requests.budget import worst_case_cost, worst_case_tokens
from ..core.numbers import is_number
from ..core.errors import BudgetError, ConfigError
from ..core.models import ModelCatalog
from ..requests.requester import prepare
from ..tasks.sandbox import SandboxUnavailable
from .pruning import n_ladder
from .space import SearchSpace
from .spec import TuneSpec


@dataclass(frozen=True)
class Preflight:
    space_size: float  # math.inf for a continuous space
    worst_trial_cost: float  # dollars, over all the data at the largest n and max_tokens
    trials_covered: float  # optimization budget / worst trial (math.inf without a budget)
    cheapest_request: float

    def line(self, spec: TuneSpec) -> str:
        size = "continuous" if self.space_size == math.inf else f"{int(self.space_size)} configs"
        budget = f"${spec.optimization_budget:g}" if spec.optimization_budget else "no optimization budget"
        covers = "" if self.trials_covered == math.inf else f", which {budget} covers {self.trials_covered:.1f} times"
        inference = f"${spec.inference_budget:g}/instance" if spec.inference_budget else "none"
        return (f"preflight: search space {size}; {len(spec.data)} data points; worst-case trial "
                f"${self.worst_trial_cost:.6f}{covers}; inference budget {inference}")


def estimate(spec: TuneSpec, space: SearchSpace, catalog: ModelCatalog, seed) -> Preflight:
    """Render every prompt for every point (a missing key raises, naming the point) and bound the costs."""
    n_max = int(_bound(space, "n", 1)[1])
    mt_min, mt_max = _bound(space, "max_tokens", None)
    worst_trial, cheapest = 0.0, math.inf
    for model in space.models:
        spec_m = catalog.get(model)
        chunks = 1 if spec_m.ignores_n else len(n_ladder(n_max))
        for choice in range(len(space.prompts or space.messages)):
            template = {"prompt": choice} if space.prompts is not None else {"messages": choice}
            base = space.decode({**space.constants, "model": model, **template})
            trial = 0.0
            for i, point in enumerate(spec.data):
                worst = prepare(dict(base, n=1, max_tokens=int(mt_max) if mt_max else None), point, catalog, seed,
                                spec.force_chat, index=i)[0]
                bound = worst_case_tokens(spec_m, worst.payload)
                one, prompt_part = bound.cost(spec_m), bound.prompt * spec_m.prompt_price
                # a provider that ignores n pays the prompt per choice; one that honours it, per ladder step
                trial += n_max * one if spec_m.ignores_n else chunks * prompt_part + n_max * (one - prompt_part)
                low = dict(worst.payload, max_tokens=int(mt_min) if mt_min else None)
                cheapest = min(cheapest, worst_case_cost(spec_m, low))
            worst_trial = max(worst_trial, trial)
    budget = spec.optimization_budget
    if budget is not None and budget < cheapest:
        raise BudgetError(f"optimization_budget ${budget:g} is below the cheapest possible request (worst case "
                          f"${cheapest:.6f}): nothing could be evaluated")
    covers = budget / worst_trial if budget and worst_trial else math.inf
    return Preflight(space.size(), worst_trial, covers, cheapest)


def trial_worst_case(config: dict, spec: TuneSpec, catalog: ModelCatalog, seed) -> float:
    """The most one trial of `config` can cost: every point, every step of the n ladder, every endpoint of its
    config_list, each request at its worst case. The sum of what the trial's steps will reserve."""
    n, total, have = config.get("n", 1), 0.0, 0
    for step in n_ladder(n):
        for i, point in enumerate(spec.data):
            for request in prepare(dict(config, n=step - have), point, catalog, seed, spec.force_chat, index=i,
                                   offset=have):
                total += sum(worst_case_cost(catalog.get(request.model), payload) for payload, _ in request.parts)
        have = step
    return total


def _bound(space: SearchSpace, name: str, default):
    try:
        return space.bounds(name)
    except KeyError:
        return default, default


def dry_run_eval_func(spec: TuneSpec) -> None:
    """Call eval_func on the first point with two answers a model really gives (an empty one, and a plain
    one): an eval_func that raises, returns something else than a dict, or lacks the metric or gives it as
    a non-number would fail after money was spent, so it fails now."""
    point = spec.data[0]
    for answers in ([""], ["I do not know."]):
        try:
            probe = spec.eval_func(list(answers), **point)
        except SandboxUnavailable:
            raise  # its own words say what to install or how to opt in
        except Exception as exc:  # noqa: BLE001 - reported with what it was given
            raise ConfigError(f"eval_func raised {type(exc).__name__}: {exc} when given the answers {answers!r} "
                              "for data point 0; it must grade any text a model may return") from exc
        if not isinstance(probe, dict):
            raise ConfigError(f"eval_func must return a dict of metrics, got {type(probe).__name__} for data point 0")
        name = spec.aggregate.source(probe)  # the metric itself, or the one agg_method makes it from
        if name is None:
            raise ConfigError(f"metric {spec.metric!r} is not in eval_func's result (it returns {sorted(probe)})")
        value = probe[name]
        if not is_number(value):
            raise ConfigError(f"eval_func's {name!r} is {value!r}: a metric must be a number (or a bool)")
        if not math.isfinite(float(value)):
            raise ConfigError(f"eval_func's {name!r} is {float(value)} when given the answers {answers!r} for "
                              "data point 0: a metric must be a finite number (a NaN compares as neither better "
                              "nor worse, so no config could be chosen by it)")
