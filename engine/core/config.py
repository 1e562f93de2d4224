"""Typed, validated run configuration: one dataclass per Hydra config group, stored in the ConfigStore.

`register_configs()` is called explicitly by the entry points and tests (never at import). Search
domains are written declaratively in YAML (`{uniform: [0, 2]}`) and become FLAML domains here.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional
from urllib.parse import urlparse

from omegaconf import MISSING

from .errors import ConfigError
from .models import ModelSpec

SELECTION_RULES = ("best", "1se")  # engine/tuning/selection.py says what each does
SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")  # tracking.uri


def check_uri(uri: str, key: str = "tracking.uri") -> str:
    """The URI itself, or a one-line error when MLflow could not use it."""
    scheme = urlparse(uri).scheme.split("+", 1)[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a path
        scheme = ""
    if scheme not in SCHEMES:
        raise ConfigError(f"{key}: {uri!r} has an unknown scheme {scheme!r}; use sqlite:///mlflow.db, "
                          "http(s)://host:port (an MLflow server), postgresql://..., or a folder path")
    return uri


def _mutable_schema(spec_cls, name: str):
    """The same fields as a (frozen) spec class, as a mutable dataclass Hydra can compose into."""
    hints = typing.get_type_hints(spec_cls)
    return dataclasses.make_dataclass(name, [(f.name, hints[f.name], dataclasses.field(
        default=f.default, default_factory=f.default_factory)) for f in dataclasses.fields(spec_cls)])


# The `model` group's schema: exactly ModelSpec's fields (conf/model/*.yaml is also the price table).
ModelConfig = _mutable_schema(ModelSpec, "ModelConfig")
ModelConfig.__module__ = __name__


@dataclass
class TaskConfig:
    name: str = MISSING  # a registered task (python -m engine.tasks lists them), or "generic"
    tune_size: Optional[int] = None  # cut the tune split to this many points
    test_size: Optional[int] = None
    test_fraction: float = 0.5
    # task=generic only (a task registered in code declares its own and refuses these): a JSONL/CSV file,
    # the answer field (default "answer"), a built-in metric (default exact_match), its prompts
    path: Optional[str] = None
    answer_field: Optional[str] = None
    metric: Optional[str] = None
    pattern: Optional[str] = None  # for metric=regex: a pattern with the answer in group 1
    prompts: Optional[List[str]] = None


GENERIC_TASK_KEYS = ("path", "answer_field", "metric", "pattern", "prompts")


# The default search space, for `python -m engine.tune` and for the seed API's `tune(**config)` alike.
DEFAULT_MODEL = "smollm2"
DEFAULT_TEMPERATURE = ("uniform", 0, 2)  # neither temperature nor top_p given: one of the two is searched
DEFAULT_TOP_P = ("uniform", 0, 1)
DEFAULT_MAX_TOKENS = ("lograndint", 16, 512)  # neither the search nor the task gives a range
DEFAULT_N = ("randint", 1, 3)  # randint excludes its upper bound: 1 or 2 completions


@dataclass
class SearchConfig:
    """Each value is a constant, a list (choose among) or a domain like [uniform, 0, 2]."""

    models: Optional[List[str]] = None  # search among several models in one tune (else: the `model` group)
    prompts: Optional[List[str]] = None  # None: the task's own prompts
    messages: Optional[List[Any]] = None  # chat prefixes to choose among, instead of prompts
    stops: Optional[List[Any]] = None  # None: the task's own stop lists
    temperature: Any = None  # give temperature or top_p, not both; neither: search either
    top_p: Any = None
    max_tokens: Any = None  # None: the task's own range (arithmetic and capitals [lograndint, 4, 16])
    n: Any = field(default_factory=lambda: list(DEFAULT_N))


@dataclass
class BudgetConfig:
    inference: Optional[float] = None  # dollars per instance at inference time
    optimization: float = 0.0045  # dollars in total for the search: a hard cap
    num_samples: int = -1  # trials; -1: as many as the optimization budget allows
    test: Optional[float] = None  # engine.test: dollars a test run may spend at worst; None: budget.optimization


@dataclass
class SelectionConfig:
    rule: str = "best"  # best: cost breaks ties on the best metric; 1se: cheapest within one standard error


@dataclass
class TuneConfig:
    # how the metric aggregates over the tune points, as `test`'s agg_method: avg, median, min (the worst
    # point), max, sum, or {metric: name}; the selection rule and the intervals apply to the aggregate
    agg_method: Any = "avg"


@dataclass
class CacheConfig:
    path: str = ".cache"
    seed: int = 41


@dataclass
class RequestsConfig:
    """How each request is sent (the seed library's request_timeout, max_retry_period, retry_wait_time)."""

    timeout: float = 60.0  # seconds one attempt may take
    max_retry_period: float = 120.0  # seconds of retrying one request in total (429, 5xx, timeouts)
    retry_wait_time: float = 0.5  # the first wait; it doubles per attempt, with jitter, up to max_wait
    max_wait: float = 20.0
    jitter: float = 0.5


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: Optional[str] = None  # default: the task's name
    registered_model: Optional[str] = None  # default: "<task>-<model>"
    artifacts: Optional[str] = "mlartifacts"  # artifact folder for new experiments on a local store


@dataclass
class ParallelConfig:
    backend: str = "local"  # local: this process's event loop; ray: Ray workers (conf/parallel/ray.yaml)
    # requests in flight at once, across all trials: auto (or null) adapts per endpoint up to its model's
    # concurrency.ceiling (engine/requests/providers/limiter.py); a number pins it
    concurrency: Any = "auto"
    trials: Optional[int] = None  # trials in flight together; None: half of concurrency (ray: workers)
    address: Optional[str] = None  # ray: null starts a local Ray; auto or ray://host:port joins a cluster
    workers: int = 2  # ray: trials at once
    share_cache: bool = True  # ray: workers on this machine use the driver's cache directly

    def ray_settings(self) -> Optional[dict]:
        """The Tuner's Ray settings, or None to run trials in this process."""
        if self.backend == "local":
            return None
        return {"address": self.address, "workers": self.workers, "share_cache": self.share_cache}


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    search: SearchConfig = field(default_factory=SearchConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    requests: RequestsConfig = field(default_factory=RequestsConfig)
    config: Optional[str] = None  # engine.test: a saved best config (JSON) to evaluate
    progress: bool = True
    # how model-written code runs (task=humaneval): os, in bubblewrap (engine/tasks/sandbox.py); unsafe, with your
    # rights (warned). None: $ENGINE_SANDBOX, else os
    sandbox: Optional[str] = None


@dataclass
class PromoteConfig:
    run_id: Optional[str] = None  # default: the last finished tune in the tracking store
    sweep: Optional[str] = None  # a sweep run's id, or `last`: promote that sweep's winner
    name: Optional[str] = None  # registered model name; default: the run's registered_model tag
    alias: str = "production"
    force: bool = False  # move the alias even when the input fields change or the test metric is worse
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def _agg_names(agg_method) -> bool:
    """A config file names its aggregation: one name, or one per metric."""
    from .stats import AGGREGATORS

    names = agg_method.values() if isinstance(agg_method, dict) else [agg_method]
    return all(isinstance(n, str) and n in AGGREGATORS for n in names)


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; `conf/config.yaml` and `conf/promote.yaml` extend them."""
    from hydra.core.config_store import ConfigStore

    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(name="promote_schema", node=PromoteConfig)
    OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)


def path_safe(text: str) -> str:
    """A sweep job's folder name from its overrides: what an override value cannot hold unquoted (`=`, `,`,
    brackets, spaces, quotes) becomes `_`, so that a path inside it can be passed as `config=...`."""
    return re.sub(r"[^\w.:+@%/-]|/", "_", str(text))


def to_run_config(cfg) -> RunConfig:
    """A composed DictConfig -> a RunConfig object, with the checks types alone cannot express."""
    from omegaconf import OmegaConf

    _reject_unknown_keys(cfg, RunConfig, "")
    run: RunConfig = OmegaConf.to_object(cfg)
    run.model = ModelSpec.from_dict(dataclasses.asdict(run.model))
    dollars = lambda v: math.isfinite(v) and v > 0  # noqa: E731 - nan and inf are not budgets
    checks = [
        ("budget.optimization", run.budget.optimization, dollars(run.budget.optimization)),
        ("budget.inference", run.budget.inference, run.budget.inference is None or dollars(run.budget.inference)),
        ("budget.test", run.budget.test, run.budget.test is None or dollars(run.budget.test)),
        ("budget.num_samples", run.budget.num_samples, run.budget.num_samples == -1 or run.budget.num_samples > 0),
        ("parallel.concurrency", run.parallel.concurrency, run.parallel.concurrency in (None, "auto") or (
            isinstance(run.parallel.concurrency, int) and not isinstance(run.parallel.concurrency, bool)
            and run.parallel.concurrency >= 1)),
        ("parallel.backend", run.parallel.backend, run.parallel.backend in ("local", "ray")),
        ("task.test_fraction", run.task.test_fraction, 0 < run.task.test_fraction < 1),
        ("selection.rule", run.selection.rule, run.selection.rule in SELECTION_RULES),
        ("tune.agg_method", run.tune.agg_method, _agg_names(run.tune.agg_method)),
        ("sandbox", run.sandbox, run.sandbox in (None, "os", "unsafe")),
        ("task.tune_size", run.task.tune_size, run.task.tune_size is None or run.task.tune_size >= 1),
        ("task.test_size", run.task.test_size, run.task.test_size is None or run.task.test_size >= 1),
        ("requests.timeout", run.requests.timeout, dollars(run.requests.timeout)),  # finite and > 0
        ("requests.max_retry_period", run.requests.max_retry_period, _finite_at_least_0(run.requests.max_retry_period)),
        ("requests.retry_wait_time", run.requests.retry_wait_time, _finite_at_least_0(run.requests.retry_wait_time)),
        ("requests.max_wait", run.requests.max_wait, _finite_at_least_0(run.requests.max_wait)),
        ("requests.jitter", run.requests.jitter, _finite_at_least_0(run.requests.jitter)),
        ("model.context_length", run.model.context_length, run.model.context_length >= 1),
        ("search.prompts", run.search.prompts, run.search.prompts is None or len(run.search.prompts) > 0),
        ("search.messages", run.search.messages, run.search.messages is None or len(run.search.messages) > 0),
    ]
    for path, value, ok in checks:
        if not ok:
            raise ConfigError(f"{path}: invalid value {value!r}")
    if run.tracking.enabled:
        check_uri(run.tracking.uri)
    return run


def _finite_at_least_0(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _reject_unknown_keys(node, schema, path: str) -> None:
    """Hydra's `+key=value` can add keys a schema does not have; OmegaConf would drop them silently."""
    names = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in node.keys():
        where = f"{path}{key}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key; {path.rstrip('.') or 'the config'} has {sorted(names)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and hasattr(node[key], "keys"):
            _reject_unknown_keys(node[key], kind, where + ".")
