"""Run an experiment from a typed RunConfig: tune on the task's tune split, test the best config on the
held-out split, write the results, and return a summary. The entry points only compose and print."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .core.config import DEFAULT_MAX_TOKENS, RunConfig
from .core.errors import ConfigError
from .session import Session
from .tasks import Task, load_task
from .evaluate.testing import run_test
from .core.redaction import public_view
from .core.secret_shapes import refuse_endpoints
from .core.templates import check_text
from .core.records import Summary
from .core.stats import estimate, with_functions
from .tuning import Tuner, TuneSpec
from .tuning.space import to_domain


def task_defaults(search, task: Task) -> dict:
    """The `search` group's prompts, stop lists and max_tokens in config form, the task's own where null."""
    stops = search.stops if search.stops is not None else task.stops
    return {"prompts": list(search.prompts or task.prompts),
            "stops": [list(x) if isinstance(x, (list, tuple)) else x for x in stops] if stops else stops,
            "max_tokens": search.max_tokens if search.max_tokens is not None
            else list(task.max_tokens or DEFAULT_MAX_TOKENS)}


def search_space(run: RunConfig, task: Task) -> dict:
    """The Tuner's space from the `search` group, the task's defaults and the `model` group."""
    s = run.search
    given = task_defaults(s, task)
    space: dict = {"model": list(s.models) if s.models else run.model.name}
    if s.messages:
        space["messages"] = [list(m) for m in s.messages]
    else:
        space["prompt"] = given["prompts"]
    if given["stops"]:
        space["stop"] = given["stops"]
    for name in ("temperature", "top_p", "max_tokens", "n"):
        value = given["max_tokens"] if name == "max_tokens" else getattr(s, name)
        if value is not None:
            space[name] = to_domain(value, f"search.{name}")
    return space


def session_for(run: RunConfig, base: Session) -> Session:
    """A session of this run's own (its cache and seed, its request settings, the composed model in its
    catalog) on `base`'s clients, event loop and embedded server, so a multirun does not start them per job."""
    return base.derive(seed=run.cache.seed, cache_path=run.cache.path, catalog=base.catalog.with_model(run.model),
                       requests=run.requests)


def run_experiment(run: RunConfig, output_dir: str, session: Session, sweep: str | None = None,
                   label: str | None = None) -> Summary:
    """Tune, test and record one experiment on a session derived from `session`; an MLflow run ends
    FAILED/KILLED if this does not finish. `label` (the job's overrides) names the MLflow run."""
    task = load_task(run.task)
    tune_data = task.split("tune", run.task.tune_size)
    test_data = task.split("test", run.task.test_size)
    space = search_space(run, task)
    check_text(tune_data, f"task {task.name}, tune split")
    check_text(test_data, f"task {task.name}, test split")
    tracker = new_tracker(run, task) if run.tracking.enabled else None
    try:
        if tracker:
            start_tracking(tracker, run, task, space, tune_data, test_data, sweep, label)
        summary = _tune_and_test(run, task, space, tune_data, test_data, Path(output_dir), tracker,
                                 session_for(run, session))
    except KeyboardInterrupt as exc:
        if tracker:
            tracker.end("KILLED", exc)
        raise
    except BaseException as exc:
        if tracker:
            tracker.end("FAILED", exc)
        raise
    return summary


def new_tracker(run: RunConfig, task: Task):
    from .mlflow.tracking import Tracker

    artifacts = run.tracking.artifacts
    location = Path(artifacts).resolve().as_uri() if artifacts and not run.tracking.uri.startswith("http") else None
    return Tracker(run.tracking.uri, run.tracking.experiment or task.name, location)


def start_tracking(tracker, run: RunConfig, task: Task, space: dict, tune_data, test_data, sweep: str | None,
                   label: str | None = None) -> None:
    """The parent run, named by what differs: composed config and search space, both data splits, and the
    tags the UI groups by."""
    registered = run.tracking.registered_model or f"{task.name}-{run.model.name}"
    tags = {"task": task.name, "model": run.model.name, "sweep": sweep, "overrides": label,
            "price_is_nominal": run.model.price_is_nominal,
            "registered_model": registered, "metric": task.metric, "mode": task.mode,
            "task_description": task.description or None}
    name = " · ".join(filter(None, (label, task.name, run.model.name)))  # what differs first
    tracker.start(dataclasses.asdict(run), tags, {"tune": tune_data, "test": test_data}, name=name, space=space)


def _tune_and_test(run: RunConfig, task: Task, space: dict, tune_data, test_data, out: Path, tracker,
                   session: Session) -> Summary:
    out.mkdir(parents=True, exist_ok=True)
    spec = TuneSpec(tune_data, task.metric, task.mode, task.eval_func, inference_budget=run.budget.inference,
                    optimization_budget=run.budget.optimization, num_samples=run.budget.num_samples,
                    log_file_name=str(out / "trials.jsonl"), concurrency=run.parallel.concurrency,
                    trials=run.parallel.trials, ray=run.parallel.ray_settings(),
                    progress=run.progress, space=space, selection=run.selection.rule,
                    agg_method=run.tune.agg_method)
    tuner = Tuner(spec, session.requester, run.cache.seed, on_trial=tracker.log_trial if tracker else None)
    best, _ = tuner.run()
    save_config(best, out / "best_config.json")
    tested = run_test(session.requester, run.cache.seed, test_data, best, task.eval_func,
                      agg_method=with_functions(run.tune.agg_method), concurrency=run.parallel.concurrency,
                      progress=run.progress)
    spent = tested.accounting
    agg = spec.aggregate  # the test figure and its interval are the same aggregate as the tune's
    test_interval = estimate([float(p[agg.source(p)]) for p in tested.per_instance if agg.source(p)], agg)
    summary = Summary(task=task.name, model=run.model.name, trials=len(tuner.trials),
                      pruned=sum(1 for t in tuner.trials if t.pruned), best_config=best, metric=task.metric,
                      mode=task.mode, tune_metric=tuner.best_metric, test_metric=tested.metrics.get(task.metric),
                      tune_interval=tuner.best.interval, test_interval=test_interval,
                      tune_cost_per_instance=tuner.best.inference_cost_usd_per_instance,
                      test_cost_per_instance=spent["inference_cost"],
                      selection=run.selection.rule, reason=tuner.choice.reason,
                      test_result=tested.merged(), paid=tuner.guard.paid + spent["spent"],
                      tune_paid=tuner.guard.paid, budget=run.budget.optimization,
                      saved=tuner.guard.saved + spent["saved"],
                      cache_hits=sum(t.cache_hits for t in tuner.trials) + spent["cache_hits"],
                      requests=sum(t.requests for t in tuner.trials) + spent["requests"],
                      stopped_by_budget=tuner.stopped_by_budget, output_dir=str(out),
                      unanswered_requests=tuner.guard.unanswered_requests + spent["unanswered_requests"],
                      unanswered_usd=tuner.guard.unanswered + spent["unanswered_usd"],
                      nominal_prices=all(session.catalog.get(m).price_is_nominal for m in tuner.space.models),
                      mlflow_run=tracker.run_id if tracker else None,
                      mlflow_ui=tracker.ui_hint() if tracker else None)
    (out / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    if tracker:
        from .mlflow.items import item_table, tested_rows, trial_rows
        from .mlflow.tracking import parent_metrics, summary_line

        items = {"items/best_trial.json": item_table(tune_data, best, trial_rows(tuner.best.details), task.metric,
                                                     task.mode),
                 "items/test.json": item_table(test_data, best, tested_rows(tested), task.metric, task.mode)}
        tracker.finish(best, parent_metrics(tuner.best.metrics, tested, summary), tuner.trials, task.metric,
                       task.mode, [out / "trials.jsonl", out / "summary.json"], best_trial=tuner.best,
                       note=summary_line(summary), items=items)
    return summary


def save_config(config: dict, path: Path) -> None:
    """A best config as JSON (credentials redacted); templates must be strings (callables cannot be reloaded)."""
    if any(callable(v) for v in config.values()):
        raise ConfigError("a config with callable templates cannot be saved; use str templates in task packs")
    path.write_text(json.dumps(public_view(config), indent=2))


def load_saved_config(path: str) -> dict:
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config: no saved config at {path}")
    try:
        config = json.loads(file.read_text())
    except ValueError as exc:
        raise ConfigError(f"config: {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "model" not in config:
        raise ConfigError(f"config: {path} does not hold a config with a `model`")
    refuse_endpoints(config, f"config: {path}")
    return config
