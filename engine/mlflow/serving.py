"""The registered artifact: an `mlflow.pyfunc` model whose `predict` fills the best config's templates
with each row of a DataFrame and returns the completions, made by an engine session of its own (its cache
included) in the serving process. Rows are answered concurrently; a row the config cannot use is a client
error (HTTP 400 from `mlflow models serve`) in one line.

The model's code is the installed engine's: the MLmodel names this module as its `loader_module` and the
artifact holds the config as data only, so nothing in the artifact store is code that a load would run (a
"models from code" file could be appended to by anything that can write there).

What one request may cost is bounded before it is paid for (`ServingLimits`, the model's `model_config`):
rows per request, prompt bytes per row (a row's completion side is already bounded by the config's
max_tokens and n, so its prompt is what makes one row cost $0.0001 or $0.30), and a deadline under MLflow's
own request timeout, after which no further row is sent: the client got its 504 and stopped waiting, so
the rest would be paid for nobody."""
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, distributions, version

import pandas as pd

from ..requests.budget import worst_case_cost
from ..core.errors import ConfigError, EngineError
from ..evaluate.evaluator import extract_text
from ..requests.requester import prepare
from ..session import Session
from ..core.templates import config_fields

MAX_ROWS_IN_FLIGHT = 16  # rows answered at once (the session's limits on requests still apply)


def _mlflow_timeout() -> float:
    """What `mlflow models serve` waits before it answers 504 (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT)."""
    try:
        return float(os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", 60))
    except ValueError:
        return 60.0


@dataclass(frozen=True)
class ServingLimits:
    """Bounds on one predict call; saved as the model's `model_config`, which
    `mlflow.pyfunc.load_model(uri, model_config={...})` overrides."""

    max_rows: int = 256  # rows in one request
    max_prompt_bytes: int = 65536  # UTF-8 bytes of one row's rendered prompt (or messages)
    deadline_s: float | None = None  # None: 5 s under MLflow's request timeout, which is 60 s by default

    @classmethod
    def from_model_config(cls, model_config: dict | None) -> "ServingLimits":
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in (model_config or {}).items() if k in known and v is not None}
        limits = cls(**given)
        for name in ("max_rows", "max_prompt_bytes"):
            value = getattr(limits, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model_config {name} must be a positive integer, got {value!r}")
        return limits

    def deadline(self) -> float:
        return self.deadline_s if self.deadline_s is not None else max(1.0, _mlflow_timeout() - 5.0)

    def as_model_config(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> "ConfigModel":
    """MLflow's entry (`loader_module: engine.mlflow.serving`): the config registered as the model's data."""
    with open(data_path) as f:
        return ConfigModel(json.load(f), Session(), ServingLimits.from_model_config(model_config))


class _DeadlinePassed(EngineError):
    pass


class ConfigModel:
    def __init__(self, config: dict, session: Session, limits: ServingLimits | None = None):
        self.config, self.session = config, session
        self.limits = limits or ServingLimits()

    def predict(self, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One row of template fields per completion; rows answered concurrently, in order."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        deadline = time.monotonic() + self.limits.deadline()
        try:
            self._check(rows)
            self._check_bounds(rows)
            workers = max(1, min(MAX_ROWS_IN_FLIGHT, len(rows)))
            with ThreadPoolExecutor(workers, thread_name_prefix="predict") as pool:
                futures = [pool.submit(self._answer, row, deadline) for row in rows]
                try:
                    texts = [f.result() for f in futures]
                except BaseException:
                    for f in futures:  # rows not started are never sent
                        f.cancel()
                    raise
        except _DeadlinePassed:
            sent = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
            raise MlflowException(f"the request's deadline ({self.limits.deadline():g} s, under MLflow's own "
                                  f"timeout) passed after {sent} of {len(rows)} rows; the others were not sent, "
                                  "so that nobody pays for answers the client no longer waits for: send fewer "
                                  "rows per request") from None
        except ConfigError as exc:  # the input does not fit the config: the caller's to fix
            raise MlflowException(str(exc).splitlines()[0], error_code=INVALID_PARAMETER_VALUE) from None
        except EngineError as exc:  # the provider failed: one line, not a stack trace
            raise MlflowException(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        return pd.DataFrame({"completion": [t[0] if t else "" for t in texts], "choices": texts})

    def _answer(self, row: dict, deadline: float) -> list[str]:
        if time.monotonic() > deadline:
            raise _DeadlinePassed()
        chat = "messages" in self.config
        return extract_text(self.session.create(self.config, row, force_chat=chat).response)

    def _check_bounds(self, rows: list[dict]) -> None:
        """Rows per request and prompt bytes per row, both before any row is sent."""
        if len(rows) > self.limits.max_rows:
            raise ConfigError(f"{len(rows)} rows in one request, above this model's limit of "
                              f"{self.limits.max_rows}: send them in smaller requests (or load the model with "
                              "model_config={'max_rows': N})")
        chat, catalog = "messages" in self.config, self.session.catalog
        for i, row in enumerate(rows):
            request = prepare(self.config, row, catalog, self.session.seed, chat, index=i)[0]
            size = _prompt_bytes(request.payload)
            if size > self.limits.max_prompt_bytes:
                worst = worst_case_cost(catalog.get(request.model), request.payload)
                raise ConfigError(f"row {i}: its prompt is {size:,} bytes (worst case ${worst:.6f} with this "
                                  f"config), above this model's limit of {self.limits.max_prompt_bytes:,} bytes; "
                                  "load the model with model_config={'max_prompt_bytes': N} to serve it")

    def _check(self, rows: list) -> None:
        needed = config_fields(self.config)
        if not rows:
            raise ConfigError(f"no rows with the fields this config's prompt needs: {', '.join(needed) or 'none'}")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ConfigError(f"row {i}: expected an object of fields {needed}, got {type(row).__name__}")
            missing = [f for f in needed if f not in row or _absent(row[f])]
            if missing:
                raise ConfigError(f"row {i}: missing field(s) {', '.join(missing)}; this config's prompt needs "
                                  f"{', '.join(needed)}")


def _prompt_bytes(payload: dict) -> int:
    if "messages" in payload:
        return sum(len(str(m.get("content") or "").encode()) for m in payload["messages"])
    return len(str(payload.get("prompt", "")).encode())


def _absent(value) -> bool:
    """None, or the NaN pandas puts in a column a row did not send."""
    return value is None or (isinstance(value, float) and value != value)


def pip_requirements() -> list[str]:
    """What a fresh environment needs (`mlflow models serve --env-manager virtualenv` builds it): the engine
    itself, as it was installed (from a folder, a VCS URL or an index), and what its serving path imports."""
    out = [_engine_requirement()]
    for name in ("mlflow", "openai", "lmdb", "orjson", "pyyaml", "tqdm", "pandas"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    return out


def _engine_requirement() -> str:
    found = list(distributions(name="engine"))  # a source tree's engine.egg-info may come first: ask all
    if not found:
        return "engine"
    dist, direct = found[0], {}
    for candidate in found:
        try:
            direct = json.loads(candidate.read_text("direct_url.json") or "{}")
        except ValueError:
            continue
        if direct:
            dist = candidate
            break
    url = direct.get("url")
    if url and "vcs_info" in direct:
        vcs = direct["vcs_info"]
        return f"engine @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}".rstrip("@")
    if url:
        return f"engine @ {url}"  # a local folder or wheel (an editable install names its folder)
    return f"engine=={dist.version}"
