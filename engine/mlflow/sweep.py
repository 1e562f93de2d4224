"""A sweep is a run: a Hydra callback (conf/config.yaml, `hydra.callbacks`) that opens an MLflow run when
`python -m engine.tune -m ...` starts, nests every job's tune run under it, and when the sweep ends records
its winner by the tune's own selection rule (`best`: the best test metric, the cheapest of the equally good;
`1se`: the cheapest within one standard error of the best), with its link, config, test metric with interval
and $ per 1K instances, and prints one line naming it.

The jobs learn the sweep's run from the environment (ENGINE_SWEEP_RUN, ENGINE_SWEEP_URI; Hydra's basic
launcher runs them in this process). The sweep run ends whatever happens: FINISHED when a job finished (a
failed job is counted and named), FAILED when every job failed, KILLED when Ctrl-C ended it; a sweep folder
in which no job wrote anything is removed. With tracking off the callback does nothing."""
from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ..core.stats import paired_se
from .tracking import (SWEEP_KEYS_ENV, SWEEP_RUN_ENV, SWEEP_URI_ENV, TAG_MAX, Tracker, process_tag,
                       source_tags)

TIE = 1e-12


class SweepRun(Callback):
    """Hydra's Callback API: on_multirun_start / on_job_start / on_job_end / on_multirun_end."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.sweep_dir: Path | None = None
        self.swept: list[str] = []  # the keys the sweep varies
        self.jobs = self.failed = 0
        self.ended = False

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        if config.hydra.job.name != "tune" or not config.tracking.enabled:
            return
        from ..core.config import check_uri

        tracking = config.tracking
        uri = check_uri(str(tracking.uri))
        experiment = tracking.experiment or config.task.name
        artifacts = tracking.artifacts
        location = Path(artifacts).resolve().as_uri() if artifacts and not uri.startswith("http") else None
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        overrides = list(config.hydra.overrides.task)
        self.swept = [o.split("=", 1)[0] for o in overrides if _is_sweep(o)]
        label = " · ".join(o for o in overrides if _is_sweep(o)) or "sweep"
        self.tracker = Tracker(uri, experiment, location)
        tags = {**source_tags(), "engine.kind": "sweep", "engine.process": process_tag(),
                "sweep": str(self.sweep_dir), "overrides": " · ".join(overrides), "task": config.task.name}
        run = self.tracker.client.create_run(self.tracker.experiment_id, tags=tags,
                                             run_name=f"sweep · {label} · {config.task.name}")
        self.tracker.run_id = run.info.run_id
        os.environ[SWEEP_RUN_ENV], os.environ[SWEEP_URI_ENV] = run.info.run_id, uri
        os.environ[SWEEP_KEYS_ENV] = ",".join(k.lstrip("+~") for k in self.swept)
        atexit.register(self._at_exit)  # a failed job or Ctrl-C skips on_multirun_end: the run still ends

    def on_job_start(self, config, **kwargs: Any) -> None:
        if self.tracker is not None:
            self.jobs += 1

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        if self.tracker is not None and job_return.status.name != "COMPLETED":
            self.failed += 1

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        self._close()

    def _at_exit(self) -> None:
        try:
            self._close()
        except Exception as exc:  # noqa: BLE001 - on the way out: say it, do not raise from atexit
            print(f"sweep: could not close its MLflow run: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _close(self) -> None:
        if self.ended or self.tracker is None:
            return
        self.ended = True
        for key in (SWEEP_RUN_ENV, SWEEP_URI_ENV, SWEEP_KEYS_ENV):
            os.environ.pop(key, None)
        _remove_if_empty(self.sweep_dir)
        client, run_id = self.tracker.client, self.tracker.run_id
        experiments = [e.experiment_id for e in client.search_experiments()]  # jobs may be of other tasks
        jobs = client.search_runs(experiments, f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1000)
        jobs = [r for r in jobs if r.data.tags.get("engine.kind") == "tune"]
        finished = [r for r in jobs if r.info.status == "FINISHED"]
        winner = pick(finished, client)
        counts = {"jobs": max(self.jobs, len(jobs)), "jobs_finished": len(finished),
                  "jobs_failed": sum(r.info.status == "FAILED" for r in jobs) or self.failed}
        status = "FINISHED" if finished else ("KILLED" if any(r.info.status == "KILLED" for r in jobs)
                                              else "FAILED")
        metrics = {k: float(v) for k, v in counts.items()}
        if winner is None:
            line = (f"sweep {status.lower()}: no job finished ({counts['jobs']} started, "
                    f"{counts['jobs_failed']} failed); nothing to choose")
            client.set_tag(run_id, "mlflow.note.content", line[:TAG_MAX])
            client.log_batch(run_id, metrics=_metric_list(metrics))
            client.set_terminated(run_id, status)
            print(line, file=sys.stderr)
            return
        run, reason = winner
        metric = run.data.tags.get("metric", "")
        page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        figures = _figures(run, metric)
        reason += f"; {len(finished)} of {counts['jobs']} jobs finished"
        line = f"sweep winner: {run.info.run_name}: {figures} ({reason}); run {run.info.run_id}"
        client.set_tag(run_id, "mlflow.note.content",
                       f"winner: [{run.info.run_name}]({page}): {figures} ({reason})"[:TAG_MAX])
        for key, value in {"winner_run_id": run.info.run_id, "winner": run.info.run_name,
                           "winner_overrides": run.data.tags.get("overrides", ""), "metric": metric,
                           "mode": run.data.tags.get("mode", "max")}.items():
            client.set_tag(run_id, key, str(value)[:TAG_MAX])
        from mlflow.entities import Param

        params = [Param(f"winner.{k.removeprefix('best.')}", v) for k, v in run.data.params.items()
                  if k.startswith("best.")]
        shown = {f"test_{metric}{suffix}" for suffix in ("", "_se", "_ci_low", "_ci_high")}
        metrics.update({f"winner_{k}": v for k, v in run.data.metrics.items()
                        if k in shown or k.startswith("test_inference_cost_usd_per_")})
        for i in range(0, max(len(params), len(metrics), 1), 100):
            client.log_batch(run_id, metrics=_metric_list(metrics)[i:i + 100], params=params[i:i + 100])
        chosen = _chosen_values(run.data.tags.get("overrides", ""), self.swept)
        name = client.get_run(run_id).info.run_name
        if chosen:
            client.update_run(run_id, name=f"{name} → {chosen}")
        client.set_terminated(run_id, status)
        print(line)


def _is_sweep(override: str) -> bool:
    """`key=a,b` or a sweep function (`range(...)`, `choice(...)`, `glob(...)`): the keys a sweep varies."""
    key, _, value = override.partition("=")
    if value.startswith(("range(", "choice(", "glob(", "interval(")):
        return True
    depth, quote = 0, None
    for ch in value:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def _chosen_values(overrides: str, swept: list[str]) -> str:
    """The winner's values of the swept keys (`budget.optimization=0.02`)."""
    keys = {k.lstrip("+~") for k in swept}
    parts = [p for p in overrides.split(" · ") if p.split("=", 1)[0].lstrip("+~") in keys]
    return " · ".join(parts)


def _metric_list(values: dict) -> list:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in values.items()
            if isinstance(v, (int, float)) and math.isfinite(v)]


def _figures(run, metric: str) -> str:
    m = run.data.metrics
    value, low, high = m.get(f"test_{metric}"), m.get(f"test_{metric}_ci_low"), m.get(f"test_{metric}_ci_high")
    cost = m.get("test_inference_cost_usd_per_1k_instances")
    shown = "?" if value is None else (f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None and high is not None
                                        else f"{value:.3f}")
    return f"test {metric} {shown} (95% CI), " + ("$? " if cost is None else f"${cost:.4f} ") + "per 1K instances"


def _scores(client, run, metric: str) -> list[float] | None:
    """The test's per-point values of `metric` (items/test.json), for the paired standard error."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            table = json.loads(Path(client.download_artifacts(run.info.run_id, "items/test.json", tmp)).read_text())
        column = table["columns"].index(metric)
        return [float(row[column]) for row in table["data"]]
    except Exception:  # noqa: BLE001 - no table (an older run): the unpaired error is used
        return None


def pick(runs: list, client=None) -> tuple[Any, str] | None:
    """The winning tune run among finished `runs` and why, by the tune's rule (its `selection.rule` param):
    the best test metric, the cheapest of those equal to it (`best`) or within one standard error of it
    (`1se`: the tighter of the best's own and, when the per-point results are at hand, the paired one)."""
    if not runs:
        return None
    metric = runs[0].data.tags.get("metric", "")
    mode = runs[0].data.tags.get("mode", "max")
    rule = runs[0].data.params.get("selection.rule", "best")
    scored = [r for r in runs if r.data.tags.get("metric") == metric
              and isinstance(r.data.metrics.get(f"test_{metric}"), float)]
    if not scored:
        return None
    sign = 1 if mode == "max" else -1
    value = lambda r: r.data.metrics[f"test_{metric}"]  # noqa: E731
    cost = lambda r: r.data.metrics.get("test_inference_cost_usd_per_1k_instances", math.inf)  # noqa: E731
    best = min(scored, key=lambda r: (-sign * value(r), cost(r), r.info.start_time))
    top = value(best)

    def within(r) -> bool:
        gap = sign * (top - value(r))
        if gap <= TIE * max(1.0, abs(top)):
            return True
        if rule != "1se":
            return False
        se = best.data.metrics.get(f"test_{metric}_se", 0.0)
        if client is not None:
            a, b = _scores(client, best, metric), _scores(client, r, metric)
            if a and b and len(a) == len(b):
                se = min(se, paired_se(a, b))
        return gap <= se * (1 + 1e-9)

    equals = sorted((r for r in scored if within(r)), key=lambda r: (cost(r), -sign * value(r), r.info.start_time))
    chosen = equals[0]
    of = f"{len(scored)} compared on the test split"
    if len(equals) == 1:
        reason = f"best test {metric} {top:.4g}; {of}"
    elif rule == "1se":
        reason = f"cheapest of {len(equals)} jobs within 1 SE of the best test {metric} {top:.4g}; {of}"
    else:
        reason = f"cheapest of {len(equals)} jobs at test {metric} {top:.4g}; {of}"
    return chosen, reason


def _remove_if_empty(folder: Path | None) -> None:
    """A sweep folder in which no job wrote anything (only Hydra's multirun.yaml, or nothing) is removed."""
    if folder is None or not folder.is_dir():
        return
    if all(p.name == "multirun.yaml" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
