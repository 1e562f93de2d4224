"""The registered artifact: an `mlflow.pyfunc` model whose `predict` fills the best config's templates
with each row of a DataFrame and returns the completions, made by an engine session of its own (its cache
included) in the serving process."""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import mlflow.pyfunc
import pandas as pd

from .evaluation import extract_text
from .session import Session


class ConfigModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["config"]) as f:
            self.config = json.load(f)
        self.session = Session()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One row of template fields per completion."""
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        chat = "messages" in self.config
        texts = [extract_text(self.session.create(self.config, row, force_chat=chat).response) for row in rows]
        return pd.DataFrame({"completion": [t[0] if t else "" for t in texts], "choices": texts})


def pip_requirements() -> list[str]:
    """What a fresh environment would need; `mlflow models serve --env-manager local` uses this one."""
    out = []
    for name in ("openai", "lmdb", "orjson", "tenacity", "pyyaml", "tqdm", "pandas"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    return out
