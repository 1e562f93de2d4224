"""The registered artifact: an `mlflow.pyfunc` model whose `predict` fills the best config's templates
with each row of a DataFrame and returns the completions, through the engine (cache included)."""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import mlflow.pyfunc


class ConfigModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["config"]) as f:
            self.config = json.load(f)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from .completion import ChatCompletion, Completion

        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        api = ChatCompletion if "messages" in self.config else Completion
        texts = [api.extract_text(api.create(context=row, **self.config)) for row in rows]
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
