"""The registered artifact: an `mlflow.pyfunc` model whose `predict` fills the best config's templates
with each row of a DataFrame and returns the completions, made by an engine session of its own (its cache
included) in the serving process. Rows are answered concurrently; a row the config cannot use is a client
error (HTTP 400 from `mlflow models serve`) in one line.

The model's code is the installed engine's: the MLmodel names this module as its `loader_module` and the
artifact holds the config as data only, so nothing in the artifact store is code that a load would run (a
"models from code" file could be appended to by anything that can write there)."""
import json
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, distributions, version

import pandas as pd

from .errors import ConfigError, EngineError
from .evaluation import extract_text
from .session import Session
from .templates import config_fields

MAX_ROWS_IN_FLIGHT = 16  # rows answered at once (the session's limits on requests still apply)


def _load_pyfunc(data_path: str) -> "ConfigModel":
    """MLflow's entry (`loader_module: engine.serving`): the config registered as the model's data."""
    with open(data_path) as f:
        return ConfigModel(json.load(f), Session())


class ConfigModel:
    def __init__(self, config: dict, session: Session):
        self.config, self.session = config, session

    def predict(self, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One row of template fields per completion; rows answered concurrently, in order."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        try:
            self._check(rows)
            workers = max(1, min(MAX_ROWS_IN_FLIGHT, len(rows)))
            with ThreadPoolExecutor(workers, thread_name_prefix="predict") as pool:
                texts = list(pool.map(self._answer, rows))
        except ConfigError as exc:  # the input does not fit the config: the caller's to fix
            raise MlflowException(str(exc).splitlines()[0], error_code=INVALID_PARAMETER_VALUE) from None
        except EngineError as exc:  # the provider failed: one line, not a stack trace
            raise MlflowException(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        return pd.DataFrame({"completion": [t[0] if t else "" for t in texts], "choices": texts})

    def _answer(self, row: dict) -> list[str]:
        chat = "messages" in self.config
        return extract_text(self.session.create(self.config, row, force_chat=chat).response)

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


def _absent(value) -> bool:
    """None, or the NaN pandas puts in a column a row did not send."""
    return value is None or (isinstance(value, float) and value != value)


def pip_requirements() -> list[str]:
    """What a fresh environment needs (`mlflow models serve --env-manager virtualenv` builds it): the engine
    itself, as it was installed (from a folder, a VCS URL or an index), and what its serving path imports."""
    out = [_engine_requirement()]
    for name in ("mlflow", "openai", "lmdb", "orjson", "tenacity", "pyyaml", "tqdm", "pandas"):
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
