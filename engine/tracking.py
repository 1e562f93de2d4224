"""MLflow tracking for one tune: a parent run (config, budgets, data, best config, plot) and one nested
child run per trial. Everything goes through an MlflowClient held by the Tracker: no global MLflow state,
and FLAML's own MLflow logging stays off (see engine.tuning)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from .public import public_view
from .records import TrialRecord
from .store import ensure_store

PARAM_MAX = 6000  # MLflow's limit on a param value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def git_commit(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _metrics(values: dict) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


class Tracker:
    """The MLflow side of one tune. Use `start`, `log_trial` per trial, then `finish` or `end(status)`."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        ensure_store(uri)  # a local store is made whole before the tune starts, never half-migrated
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.uri = uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=artifact_location)
        self.run_id: str | None = None

    def start(self, params: dict, tags: dict, inputs: dict[str, list[dict]] | None = None,
              name: str | None = None) -> str:
        tags = {k: str(v) for k, v in tags.items() if v is not None}
        tags["engine.kind"] = "tune"
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        self.run_id = run.info.run_id
        self._log(self.run_id, params=params)
        for context, points in (inputs or {}).items():
            self._log_dataset(points, context, tags.get("task", "data"))
        return self.run_id

    def log_trial(self, trial: TrialRecord) -> None:
        """A nested child run: the trial's config as params, its record's numbers as metrics."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        record = trial.as_dict()
        child = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number}",
                                       tags={MLFLOW_PARENT_RUN_ID: self.run_id, "engine.kind": "trial",
                                             "pruned": trial.pruned or "no"})
        values = {**record["metrics"], "pruned": float(bool(trial.pruned))}
        values.update({k: v for k, v in record.items()
                       if k not in ("config", "metrics", "pruned", "error", "trial", "started_at", "ended_at")})
        self._log(child.info.run_id, params=record["config"], metrics=values)
        self.client.set_terminated(child.info.run_id, "FINISHED")

    def finish(self, best_config: dict, metrics: dict, trials: list[TrialRecord], metric: str, mode: str,
               extra_artifacts: list[Path] = ()) -> None:
        from .plots import cost_vs_metric

        self._log(self.run_id, metrics=metrics)
        self.client.log_dict(self.run_id, public_view(best_config), "best_config.json")
        self.client.log_dict(self.run_id, public_view(best_config), "best_config.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            plot = cost_vs_metric(trials, metric, mode, Path(tmp) / "cost_vs_metric.png")
            self.client.log_artifact(self.run_id, str(plot))
        for path in extra_artifacts:
            if Path(path).exists():
                self.client.log_artifact(self.run_id, str(path))
        self.end("FINISHED")

    def ui_hint(self) -> str:
        """The command that opens the MLflow UI on this store, and the address of this run in it."""
        page = f"#/experiments/{self.experiment_id}/runs/{self.run_id}"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{page}"
        mlflow = Path(sys.executable).with_name("mlflow")
        command = os.path.relpath(mlflow) if mlflow.exists() and not os.path.relpath(mlflow).startswith("..") \
            else (str(mlflow) if mlflow.exists() else "mlflow")
        return f"{command} ui --backend-store-uri {self.uri} --port 5000, then open http://127.0.0.1:5000/{page}"

    def end(self, status: str) -> None:
        """FINISHED, FAILED or KILLED: a run never stays RUNNING."""
        if self.run_id:
            self.client.set_terminated(self.run_id, status)

    def _log(self, run_id: str, params: dict | None = None, metrics: dict | None = None) -> None:
        from mlflow.entities import Metric, Param

        params = [Param(k, str(v)[:PARAM_MAX]) for k, v in flatten(params or {}).items()]
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(metrics or {}).items()]
        for i in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])

    def _log_dataset(self, points: list[dict], context: str, name: str) -> None:
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag

        frame = pd.DataFrame([{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in p.items()}
                              for p in points])
        with warnings.catch_warnings():  # "Inferred schema contains integer column(s)": true, and not ours
            warnings.simplefilter("ignore", UserWarning)
            dataset = self.mlflow.data.from_pandas(frame, name=f"{name}-{context}")
            entity = dataset._to_mlflow_entity()
        self.client.log_inputs(self.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])])
