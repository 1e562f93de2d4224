"""The MLflow registry side: register a tune's best config as a pyfunc model version (for `mlflow models
serve`) and as a prompt version in the Prompt Registry (template + model_config), move the alias of both to
it, and load a config back by URI (`models:/NAME@production`, `prompts:/NAME-prompt@production`).

A promotion cannot silently break what the alias serves: a version records the template fields its prompt
needs (its input schema) and the tune's test metric; moving an alias to a version that needs other fields,
or that tested worse than the version holding the alias, is refused unless forced."""
from __future__ import annotations

import json
import re
import os
import tempfile
from pathlib import Path

from ..core.config import TrackingConfig, check_uri
from ..session import current_session
from ..core.errors import ConfigError
from ..core.secret_shapes import refuse_endpoints
from ..core.redaction import public_view
from ..core.templates import config_fields
from .prompts import as_config, as_prompt, prompt_name

ALIAS_TTL_S = 10.0  # how long a resolved alias is trusted: a moved alias is seen within this time


def tracking_uri(uri: str | None = None) -> str:
    """The store to use: the one given, else MLFLOW_TRACKING_URI, else the local default."""
    return check_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or TrackingConfig.uri)


def _client(uri: str | None):
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _newest(client, kind: str, user: str | None):
    """This user's most recent FINISHED run of `kind` (tune or sweep), or None; and the user."""
    import getpass

    user = user or getpass.getuser()
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = (f"tags.`engine.kind` = '{kind}' and attributes.status = 'FINISHED' and tags.`mlflow.user` = "
             f"'{user.replace(chr(39), '')}'")
    runs = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"],
                              max_results=1) if experiments else []
    return (runs[0] if runs else None), user


def last_tune_run(uri: str | None = None, user: str | None = None) -> str:
    """The most recent finished tune (a parent run with a best config) of this user: on a team's server,
    never a colleague's run picked by accident."""
    run, user = _newest(_client(uri), "tune", user)
    if run is None:
        raise ConfigError(f"no finished tune of user {user!r} in the tracking store {tracking_uri(uri)}: run "
                          "`python -m engine.tune`, or name the run: run_id=...")
    return run.info.run_id


def sweep_winner(sweep: str, uri: str | None = None, user: str | None = None) -> str:
    """The winning tune run of a sweep run (engine.mlflow.sweep): `sweep` is its run id, or `last` for this
    user's most recent finished sweep."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    if sweep == "last":
        run, user = _newest(client, "sweep", user)
        if run is None:
            raise ConfigError(f"sweep=last: no finished sweep of user {user!r} in {tracking_uri(uri)}: run "
                              "`python -m engine.tune -m ...`, or name the sweep run: sweep=<run id>")
    else:
        try:
            run = client.get_run(sweep)
        except MlflowException as exc:
            raise ConfigError(f"sweep={sweep}: no such run in {tracking_uri(uri)} "
                              f"({str(exc).splitlines()[0]})") from None
    if run.data.tags.get("engine.kind") != "sweep":
        raise ConfigError(f"sweep={sweep}: run {run.info.run_id} is not a sweep's run (engine.kind="
                          f"{run.data.tags.get('engine.kind')!r}); give a sweep run's id, or run_id= for a tune")
    winner = run.data.tags.get("winner_run_id")
    if not winner:
        raise ConfigError(f"sweep={sweep}: sweep run {run.info.run_id} ({run.info.status}) has no winner: "
                          f"{run.data.tags.get('mlflow.note.content', 'no job finished')}")
    return winner


ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")


def check_alias(alias: str) -> None:
    """MLflow refuses `latest`, `v<number>` and names that are not identifiers, but only after a version was
    registered: refuse them before anything is written."""
    if not isinstance(alias, str) or not ALIAS.match(alias) or alias.lower() == "latest" \
            or re.fullmatch(r"[vV]\d+", alias):
        raise ConfigError(f"alias={alias!r}: an alias is a name like production or staging (letters, digits, _ "
                          "and -, not starting with a digit), and not `latest` or `v<number>`, which MLflow keeps "
                          "for itself")


def _holder(client, name: str, alias: str):
    """The version `alias` points at now, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def check_promotion(holder, fields: list[str], metric: str | None, figures: dict, mode: str,
                    name: str, alias: str) -> str:
    """Refuse (ConfigError) to move `alias` from `holder` to a version needing other `fields` or whose test
    `metric` is worse beyond noise; returns a note comparing the two (empty when there is no holder). A
    holder registered without these tags is not compared.

    `figures` are the new run's metrics (`test_<metric>`, `test_<metric>_se`, `..._ci_low/high`, the test cost
    per 1K instances). "Worse beyond noise" is the one-standard-error rule the tune uses: lower by more than
    one standard error of the difference, sqrt(se_new^2 + se_old^2) (the two versions' per-point results are
    not both at hand, so the unpaired error). Without standard errors on both sides, any drop is refused."""
    if holder is None:
        return ""
    where = f"{name}@{alias} (version {holder.version})"
    known = holder.tags.get("input_fields")
    if known is not None and known.split(",") != fields and not (known == "" and not fields):
        old = set(filter(None, known.split(",")))
        added, removed = sorted(set(fields) - old), sorted(old - set(fields))
        change = "; ".join(part for part in (f"needs {', '.join(added)}" if added else "",
                                             f"no longer takes {', '.join(removed)}" if removed else "") if part)
        raise ConfigError(f"refused: the new version's prompt {change} (fields {', '.join(fields) or 'none'}; "
                          f"{where} takes {', '.join(sorted(old)) or 'none'}): callers of {alias} send those "
                          "fields. Promote to another alias, or pass force=true")
    if not metric:
        return ""
    before = {k.removeprefix("metric."): _number(v) for k, v in holder.tags.items() if k.startswith("metric.")}
    old, new = _side(before, metric), _side(figures, metric)
    if old["value"] is None or new["value"] is None:
        return ""
    gap = (old["value"] - new["value"]) * (1 if mode == "max" else -1)
    both = (f"test {metric} {_shown(new)} vs {_shown(old)} of {where}; ${_cost(new)} vs ${_cost(old)} per 1K "
            "instances")
    if gap <= 0:
        return f"not worse: {both}"
    if new["se"] is not None and old["se"] is not None:
        noise = (new["se"] ** 2 + old["se"] ** 2) ** 0.5
        if gap <= noise:
            return (f"within noise: {metric} lower by {gap:.3g}, within one standard error of the difference "
                    f"({noise:.3g}); {both}")
        beyond = f", beyond noise (lower by {gap:.3g}, more than one standard error of the difference {noise:.3g})"
    else:
        beyond = " (no standard errors recorded to tell noise from a real drop)"
    raise ConfigError(f"refused: test {metric} {new['value']:.4g} is worse than {old['value']:.4g} of {where}"
                      f"{beyond}; {both}; ({'higher' if mode == 'max' else 'lower'} is better); pass force=true "
                      "to promote it anyway")


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _side(figures: dict, metric: str) -> dict:
    """One version's test figures: value, standard error, interval, cost per 1K instances (None if unknown)."""
    get = lambda key: figures.get(key)  # noqa: E731
    return {"value": get(f"test_{metric}"), "se": get(f"test_{metric}_se"), "low": get(f"test_{metric}_ci_low"),
            "high": get(f"test_{metric}_ci_high"), "cost": get("test_inference_cost_usd_per_1k_instances")}


def _shown(side: dict) -> str:
    if side["low"] is None or side["high"] is None:
        return f"{side['value']:.4g}"
    return f"{side['value']:.3f} [{side['low']:.3f}, {side['high']:.3f}]"


def _cost(side: dict) -> str:
    return "?" if side["cost"] is None else f"{side['cost']:.4f}"


def promote(run_id: str | None = None, name: str | None = None, alias: str = "production",
            uri: str | None = None, force: bool = False):
    """Register the run's best config as a new model version (with its input schema: the template fields
    its prompt needs) and point `alias` at it; refused when that would change the fields the alias takes
    or worsen its test metric, unless `force`.

    Everything goes through an MlflowClient on `uri`: MLflow's process-wide tracking URI is left alone."""
    from mlflow.exceptions import MlflowException

    check_alias(alias)
    client = _client(uri)
    run_id = run_id or last_tune_run(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(f"run_id={run_id}: no such run in {tracking_uri(uri)} ({str(exc).splitlines()[0]})") from None
    name = name or run.data.tags.get("registered_model") or f"{run.data.tags.get('task', 'engine')}-model"
    metric, mode = run.data.tags.get("metric"), run.data.tags.get("mode", "max")
    metrics = run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(client.download_artifacts(run_id, "best_config.json", tmp))
        config = json.loads(config_path.read_text())
        fields = config_fields(config)
        try:
            comparison = check_promotion(_holder(client, name, alias), fields, metric, metrics, mode, name, alias)
        except ConfigError as refused:
            if not force:
                raise
            comparison = f"forced past: {refused}"
        existing = _version_of_run(client, name, run_id)  # promoting a run again moves the alias, adds no version
        if existing is None:
            model_dir = Path(tmp) / "model"
            _save_model(model_dir, config_path, fields)
            client.log_artifacts(run_id, str(model_dir), "model")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = existing
    if version is None:
        version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run_id)
        figures = _figures(metric, metrics)
        prompt = register_prompt(client, name, config, run_id, figures, _provider(config))
        tags = {"source_run": run_id, "task": run.data.tags.get("task", ""), "input_fields": ",".join(fields),
                "metric": metric or "", "mode": mode, "config": json.dumps(public_view(config))[:5000],
                **({"prompt": prompt} if prompt else {}),
                **{f"metric.{k}": str(v) for k, v in metrics.items() if k in guard_metrics(metric)}}
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.update_model_version(name, version.version, description=(
            f"{figures}. Config: {json.dumps(public_view(config))}. Input fields: {', '.join(fields) or 'none'}. "
            f"From tune run {run_id}" + (f"; prompt {prompt}" if prompt else "") + "."))
    promotion = {"alias": alias, "forced": str(bool(force)).lower(), "comparison": comparison[:5000]}
    for key, value in promotion.items():  # what this promotion was told and did, on the version it moved to
        client.set_model_version_tag(name, version.version, f"promotion.{key}", value)
    client.set_registered_model_alias(name, alias, version.version)
    version = client.get_model_version(name, version.version)  # with its tags
    prompt = version.tags.get("prompt")
    if prompt:
        client.set_prompt_alias(prompt_name(name), alias, int(prompt.rsplit("/", 1)[1]))
    return version


def guard_metrics(metric: str | None) -> set[str]:
    """The figures the next promotion's guard compares: the test metric, its error and interval, the cost."""
    base = f"test_{metric}" if metric else "test_"
    return {base, f"{base}_se", f"{base}_ci_low", f"{base}_ci_high", "test_inference_cost_usd_per_1k_instances"}


def _figures(metric: str | None, metrics: dict) -> str:
    """`test success 0.650 [0.433, 0.819], $0.0100 per 1K instances`, for a commit message and a page."""
    side = _side(metrics, metric or "")
    if not metric or side["value"] is None:
        return "no test metric"
    return f"test {metric} {_shown(side)}, ${_cost(side)} per 1K instances"


def _version_of_run(client, name: str, run_id: str):
    """The version already registered from `run_id`, if any."""
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _provider(config: dict) -> str | None:
    try:
        return current_session().catalog.get(config.get("model")).provider
    except Exception:  # noqa: BLE001 - a model unknown here is still registered, without its provider
        return None


def register_prompt(client, name: str, config: dict, run_id: str, figures: str, provider: str | None) -> str | None:
    """The config as a version of prompt `<name>-prompt` (template, model_config, a commit message naming the
    run and its figures); its URI, or None when the template cannot be written in MLflow's format."""
    made = as_prompt(public_view(config), provider)
    if made is None:
        return None
    template, model_config = made
    version = client.register_prompt(prompt_name(name), template, commit_message=f"tune run {run_id}: {figures}",
                                     tags={"source_run": run_id, "registered_model": name},
                                     model_config=model_config)
    return f"prompts:/{prompt_name(name)}/{version.version}"


def _save_model(model_dir: Path, config_path: Path, fields: list[str]) -> None:
    """The pyfunc model: the config as artifact, an input schema of its template fields (any type: a number
    formats as well as a string), the engine's requirements. `mlflow models serve` refuses a request missing
    one with a 400 before the model runs."""
    import warnings

    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from .serving import ServingLimits, pip_requirements

    signature = ModelSignature(inputs=Schema([ColSpec(AnyType(), f) for f in fields]) if fields else None,
                               outputs=Schema([ColSpec("string", "completion")]))
    with warnings.catch_warnings():  # type-hint and schema notices about MLflow's own wrapper
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(str(model_dir), loader_module="engine.mlflow.serving", data_path=str(config_path),
                                 pip_requirements=pip_requirements(), signature=signature,
                                 model_config=ServingLimits().as_model_config())


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


def _source(uri: str, tracking: str) -> str:
    """Where `uri`'s files are."""
    try:
        return _artifact_source(_client(tracking), uri)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for a missing model or alias
        raise ConfigError(f"cannot load {uri} from {tracking}: {exc}") from None


def _download(source: str, tracking: str, uri: str) -> str:
    """The config text of a version's files."""
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot load {uri} from {tracking}: {exc}") from None
    files = list(Path(local).rglob("best_config.json")) or list(Path(local).rglob("*.json"))
    if not files:
        raise ConfigError(f"{uri} holds no config")
    return files[0].read_text()


def _prompt_config(uri: str, tracking: str) -> dict:
    """A prompt version's config."""
    try:
        version = _client(tracking).load_prompt(uri)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for a missing prompt or alias
        raise ConfigError(f"cannot load {uri} from {tracking}: {str(exc).splitlines()[0]}") from None
    return as_config(version.template, version.model_config)


def load_config(uri: str, tracking: str | None = None) -> dict:
    """The plain config dict registered at `uri` (e.g. models:/NAME@production). A version's files are
    downloaded once per session (the current one); an alias is looked up again after ALIAS_TTL_S, so a long-running process
    follows a promotion."""
    if not isinstance(uri, str) or not uri.startswith(("models:/", "runs:/", "prompts:/")):
        raise ConfigError(f"a registered config URI looks like models:/NAME@alias or prompts:/NAME@alias, got {uri!r}")
    tracking = tracking_uri(tracking)
    memo = current_session().registry
    if uri.startswith("prompts:/"):  # an alias is looked up again after ALIAS_TTL_S; a version is fetched once
        config = dict(memo.recent((uri, tracking), ALIAS_TTL_S, lambda: _prompt_config(uri, tracking)))
    else:
        source = memo.recent((uri, tracking), ALIAS_TTL_S, lambda: _source(uri, tracking))
        config = json.loads(memo.once((source, tracking), lambda: _download(source, tracking, uri)))
    refuse_endpoints(config, uri)
    return config
