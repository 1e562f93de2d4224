"""The MLflow registry side: register a tune's best config as a pyfunc model version, move an alias to it,
and load a config back by URI (`models:/NAME@production`), cached per process."""
from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

from .config import TrackingConfig
from .errors import ConfigError
from .store import check_uri


def tracking_uri(uri: str | None = None) -> str:
    """The store to use: the one given, else MLFLOW_TRACKING_URI, else the local default."""
    return check_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or TrackingConfig.uri)


def _client(uri: str | None):
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def last_tune_run(uri: str | None = None) -> str:
    """The most recent finished tune (a parent run with a best config)."""
    client = _client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.`engine.kind` = 'tune' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
    if not runs:
        raise ConfigError(f"no finished tune in the tracking store {tracking_uri(uri)}: run `python -m engine.tune`")
    return runs[0].info.run_id


def promote(run_id: str | None = None, name: str | None = None, alias: str = "production",
            uri: str | None = None):
    """Register the run's best config as a new model version and point `alias` at it.

    Everything goes through an MlflowClient on `uri`: MLflow's process-wide tracking URI is left alone."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from .serving import pip_requirements

    client = _client(uri)
    run_id = run_id or last_tune_run(uri)
    run = client.get_run(run_id)
    name = name or run.data.tags.get("registered_model") or f"{run.data.tags.get('task', 'engine')}-model"
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(client.download_artifacts(run_id, "best_config.json", tmp))
        model_dir = Path(tmp) / "model"
        mlflow.pyfunc.save_model(str(model_dir), python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                                 artifacts={"config": str(config_path)}, pip_requirements=pip_requirements())
        client.log_artifacts(run_id, str(model_dir), "model")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run_id)
    client.set_registered_model_alias(name, alias, version.version)
    metrics = run.data.metrics
    tags = {"source_run": run_id, "task": run.data.tags.get("task", ""), "alias_at_promotion": alias,
            **{f"metric.{k}": str(v) for k, v in metrics.items() if k.startswith(("test_", "tune_", "dollars"))}}
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.update_model_version(name, version.version, description=(
        f"best config of tune run {run_id}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                                                          if k.startswith(("test_", "tune_")))))
    return version


def _artifact_source(client, uri: str) -> str:
    """models:/NAME@ALIAS or models:/NAME/VERSION -> where that version's files are; runs:/ as given."""
    if not uri.startswith("models:/"):
        return uri
    ref = uri.removeprefix("models:/").strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias).source
    name, _, number = ref.partition("/")
    return client.get_model_version(name, number).source


@functools.lru_cache(maxsize=64)
def _load(uri: str, tracking: str) -> str:
    import mlflow.artifacts

    try:
        source = _artifact_source(_client(tracking), uri)
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for a missing model or alias
        raise ConfigError(f"cannot load {uri} from {tracking}: {exc}") from None
    files = list(Path(local).rglob("best_config.json")) or list(Path(local).rglob("*.json"))
    if not files:
        raise ConfigError(f"{uri} holds no config")
    return files[0].read_text()


def load_config(uri: str, tracking: str | None = None) -> dict:
    """The plain config dict registered at `uri` (e.g. models:/NAME@production); loaded once per process."""
    if not isinstance(uri, str) or not uri.startswith(("models:/", "runs:/")):
        raise ConfigError(f"a registered config URI looks like models:/NAME@alias, got {uri!r}")
    return json.loads(_load(uri, tracking_uri(tracking)))
