"""Run an experiment from a typed RunConfig: tune on the task's tune split, test the best config on the
held-out split, write the results, and return a summary. The entry points only compose and print."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .core.config import DEFAULT_MAX_TOKENS, RunConfig
from .core.errors import ConfigError
from .session import Session
from .tasks import Task, load_task
from .evaluate.testing import evaluate_config
from .core.redaction import public_view
from .core.secret_shapes import refuse_endpoints
from .core.templates import check_text
from .core.stats import Estimate, estimate
from .tuning import Tuner, TuneSpec
from .tuning.space import to_domain


@dataclass
class Summary:
    task: str
    model: str
    trials: int = 0
    pruned: int = 0
    best_config: dict = field(default_factory=dict)
    metric: str = "success"
    mode: str = "max"
    tune_metric: float | None = None
    test_metric: float | None = None
    tune_interval: Estimate | None = None  # the chosen trial's metric on the tune points, with its error
    test_interval: Estimate | None = None
    tune_cost_per_instance: float | None = None  # the chosen trial's, as measured on the tune points
    selection: str = "best"
    reason: str = ""  # why the chosen trial won (selection.py)
    test_result: dict = field(default_factory=dict)
    paid: float = 0.0  # tune + test
    tune_paid: float = 0.0
    budget: float | None = None
    saved: float = 0.0
    cache_hits: int = 0
    requests: int = 0
    stopped_by_budget: bool = False
    nominal_prices: bool = False  # the model's price is nominal (a local model): no money was billed
    unanswered_requests: int = 0  # attempts that timed out after sending: they may have been billed
    unanswered_usd: float = 0.0  # their worst case
    output_dir: str = ""
    mlflow_run: str | None = None
    mlflow_ui: str | None = None  # how to see the runs just written

    def as_dict(self) -> dict:
        """summary.json: intervals as dicts, the config with credentials redacted."""
        out = dataclasses.asdict(self)
        out["best_config"] = public_view(self.best_config)
        out["carried_over"] = (not self.carry_over()) if self.tune_interval and self.test_interval else None
        return out

    def table(self) -> str:
        rows = [("task", self.task), ("model", self.model),
                ("trials", f"{self.trials} ({self.pruned} pruned)"
                 + (", stopped by the optimization budget" if self.stopped_by_budget else "")),
                ("chosen config", json.dumps(public_view(self.best_config))),
                (f"chosen by rule {self.selection}", self.reason or "-"),
                (f"{self.metric} on tune", _fmt(self.tune_metric, self.tune_interval)),
                (f"{self.metric} on test", _fmt(self.test_metric, self.test_interval)),
                *([("carried over?", "no: " + self.carry_over())] if self.carry_over() else []),
                ("cost per 1K instances", f"${(self.tune_cost_per_instance or 0) * 1000:.4f} on tune, "
                                          f"${self.test_result.get('inference_cost', 0) * 1000:.4f} on test"),
                ("dollars paid", f"${self.paid:.6f} (tune ${self.tune_paid:.6f} of ${self.budget:g} budget, "
                                 f"test ${self.paid - self.tune_paid:.6f})"
                                 + ("; nominal prices, nothing was billed" if self.nominal_prices else "")),
                *([("possibly billed", f"up to ${self.unanswered_usd:.6f} for {self.unanswered_requests} attempts "
                                       "that timed out after sending")] if self.unanswered_requests else []),
                ("saved by the cache", f"${self.saved:.6f}"),
                ("requests / cache hits", f"{self.requests} / {self.cache_hits}"), ("results in", self.output_dir)]
        if self.mlflow_run:
            rows.append(("mlflow run", f"{self.mlflow_run} (promote: python -m engine.promote run_id={self.mlflow_run})"))
        if self.mlflow_ui:
            rows.append(("see it in MLflow", self.mlflow_ui))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


    def carry_over(self) -> str:
        """One line when the test interval lies wholly on the worse side of the tune interval, else ''."""
        if self.tune_interval and self.test_interval and self.test_interval.below(self.tune_interval, self.mode):
            return (f"the tuned result did not carry over (test 95% CI [{self.test_interval.low:.3f}, "
                    f"{self.test_interval.high:.3f}] lies wholly {'below' if self.mode == 'max' else 'above'} "
                    f"tune [{self.tune_interval.low:.3f}, {self.tune_interval.high:.3f}])")
        return ""


def _fmt(value, interval: Estimate | None = None) -> str:
    if value is None:
        return "-"
    return interval.text() if interval is not None else f"{value:.4f}"


def search_space(run: RunConfig, task: Task) -> dict:
    """The Tuner's space from the `search` group, the task's defaults and the `model` group."""
    s = run.search
    space: dict = {"model": list(s.models) if s.models else run.model.name}
    if s.messages:
        space["messages"] = [list(m) for m in s.messages]
    else:
        space["prompt"] = list(s.prompts or task.prompts)
    stops = s.stops if s.stops is not None else task.stops
    if stops:
        space["stop"] = [list(x) if isinstance(x, (list, tuple)) else x for x in stops]
    for name in ("temperature", "top_p", "max_tokens", "n"):
        value = getattr(s, name)
        if name == "max_tokens" and value is None:
            value = list(task.max_tokens or DEFAULT_MAX_TOKENS)
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
            "registered_model": registered, "metric": task.metric, "mode": task.mode}
    name = f"{task.name}-{run.model.name}" + (f"-{label}" if label else "")
    tracker.start(dataclasses.asdict(run), tags, {"tune": tune_data, "test": test_data}, name=name, space=space)


def _tune_and_test(run: RunConfig, task: Task, space: dict, tune_data, test_data, out: Path, tracker,
                   session: Session) -> Summary:
    out.mkdir(parents=True, exist_ok=True)
    spec = TuneSpec(tune_data, task.metric, task.mode, task.eval_func, inference_budget=run.budget.inference,
                    optimization_budget=run.budget.optimization, num_samples=run.budget.num_samples,
                    log_file_name=str(out / "trials.jsonl"), concurrency=run.parallel.concurrency,
                    trials=run.parallel.trials, ray=run.parallel.ray_settings(),
                    progress=run.progress, space=space, selection=run.selection.rule)
    tuner = Tuner(spec, session.requester, run.cache.seed, on_trial=tracker.log_trial if tracker else None)
    best, _ = tuner.run()
    save_config(best, out / "best_config.json")
    test_result, per_point, _ = evaluate_config(session.requester, run.cache.seed, test_data, best, task.eval_func,
                                                concurrency=run.parallel.concurrency, progress=run.progress,
                                                return_details=True)
    test_interval = estimate([float(p[task.metric]) for p in per_point if task.metric in p])
    summary = Summary(task=task.name, model=run.model.name, trials=len(tuner.trials),
                      pruned=sum(1 for t in tuner.trials if t.pruned), best_config=best, metric=task.metric,
                      mode=task.mode, tune_metric=tuner.best_metric, test_metric=test_result.get(task.metric),
                      tune_interval=tuner.best.interval, test_interval=test_interval,
                      tune_cost_per_instance=tuner.best.inference_cost_usd_per_instance,
                      selection=run.selection.rule, reason=tuner.choice.reason,
                      test_result=test_result, paid=tuner.guard.paid + test_result.get("spent", 0.0),
                      tune_paid=tuner.guard.paid, budget=run.budget.optimization,
                      saved=tuner.guard.saved + test_result.get("saved", 0.0),
                      cache_hits=sum(t.cache_hits for t in tuner.trials) + test_result.get("cache_hits", 0),
                      requests=sum(t.requests for t in tuner.trials) + test_result.get("requests", 0),
                      stopped_by_budget=tuner.stopped_by_budget, output_dir=str(out),
                      unanswered_requests=tuner.guard.unanswered_requests + test_result["unanswered_requests"],
                      unanswered_usd=tuner.guard.unanswered + test_result["unanswered_usd"],
                      nominal_prices=all(session.catalog.get(m).price_is_nominal for m in tuner.space.models),
                      mlflow_run=tracker.run_id if tracker else None,
                      mlflow_ui=tracker.ui_hint() if tracker else None)
    (out / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    if tracker:
        from .mlflow.tracking import parent_metrics, summary_line

        tracker.finish(best, parent_metrics(tuner.best.metrics, test_result, summary), tuner.trials, task.metric,
                       task.mode, [out / "trials.jsonl", out / "summary.json"], best_trial=tuner.best,
                       note=summary_line(summary))
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
