"""FLAML behind one door: the only module that imports it or reads its internals (domain classes, sampler
types, the trial runner, the result shape its searcher expects), so an upgrade of FLAML is checked here.

flaml.tune hands out Ray Tune's domain classes when Ray is installed and its own otherwise: the classes
are taken from wherever its domain functions come from, so isinstance checks hold in both cases.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import warnings

with warnings.catch_warnings():  # flaml warns that its AutoML extra is missing; tuning does not need it
    warnings.simplefilter("ignore")
    from flaml import BlendSearch, tune
    from flaml.tune.trial_runner import SequentialTrialRunner as _FlamlTrialRunner
    from flaml.tune.tune import ExperimentAnalysis

_sample = importlib.import_module(tune.randint.__module__)
Categorical, Domain, Float, Integer = _sample.Categorical, _sample.Domain, _sample.Float, _sample.Integer

__all__ = ["BlendSearch", "Categorical", "Domain", "ExperimentAnalysis", "Float", "Integer", "SequentialTrialRunner",
           "as_flaml_result", "bounds", "describe", "is_domain", "quiet_search_logs", "tune"]


class SequentialTrialRunner(_FlamlTrialRunner):
    """FLAML's runner, lighter per trial. FLAML keeps, per numeric field of a trial's result, two moving-window
    deques (last 5 and last 10 results) beside its min/max/avg/last: with one result per trial they only copy
    that result, ~40 KB a trial, held for the whole tune. They are dropped once the result is in; the summary
    (`metric_analysis`, which ExperimentAnalysis reads, `last-5-avg` included) stays."""

    def process_trial_result(self, trial, result):
        super().process_trial_result(trial, result)
        trial.n_steps, trial.metric_n_steps = (), {}  # a later result, if any, updates the summary without them


def is_domain(value) -> bool:
    return isinstance(value, Domain)


def _quantum(value) -> float | None:
    sampler = value.get_sampler()
    return sampler.q if type(sampler).__name__ == "Quantized" else None


def bounds(value) -> tuple[float, float]:
    """Lowest and highest value a domain can give: randint/lograndint exclude their upper bound,
    qrandint includes it."""
    if isinstance(value, Integer):
        return value.lower, value.upper if _quantum(value) else value.upper - 1
    if isinstance(value, Float):
        return value.lower, value.upper
    if isinstance(value, Categorical):
        return min(value.categories), max(value.categories)
    return value, value


def describe(value) -> str:
    """A domain as the flaml.tune call that makes it (`lograndint(4, 16)`, `qlograndint(8, 64, 8)`,
    `choice([1, 2])`), not `<Integer object at 0x...>`; anything else as its repr."""
    if isinstance(value, Categorical):
        return f"choice({[describe(c) if isinstance(c, (dict, Domain)) else c for c in value.categories]})"
    if isinstance(value, (Integer, Float)):
        q = _quantum(value)
        sampler = value.get_sampler()
        inner = sampler.sampler if q else sampler
        kind = type(inner).__name__
        if kind == "_Normal":
            return f"randn({inner.mean:g}, {inner.sd:g})"
        log = "log" if kind == "_LogUniform" else ""
        name = ("q" if q else "") + log + ("randint" if isinstance(value, Integer) else "uniform")
        args = [value.lower, value.upper] + ([q] if q else [])
        return f"{name}({', '.join(f'{a:g}' for a in args)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    return repr(value)


def as_flaml_result(result: dict, config: dict) -> dict:
    """What flaml.tune.report adds to a result before the searcher sees it."""
    out = dict(result, training_iteration=0, config=config)
    out.update({f"config/{k}": v for k, v in config.items()})
    return out


@contextlib.contextmanager
def quiet_search_logs():
    """FLAML's per-trial INFO lines and optuna's per-study ones are noise here; set only while a tune runs,
    so that importing the engine changes no other library's logging."""
    loggers = [logging.getLogger(name) for name in ("flaml.tune.tune", "flaml.tune.searcher.blendsearch", "optuna")]
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
