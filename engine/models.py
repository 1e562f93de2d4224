"""The model catalog: one YAML file per model under `conf/model/` holds its provider and price.

The same files are the Hydra `model` config group, so the price table lives in config, once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, UnknownModelError

PROVIDERS = ("openai", "azure", "compatible", "embedded")


def conf_dir() -> Path:
    """The project's `conf/` folder (override with ENGINE_CONF_DIR)."""
    env = os.environ.get("ENGINE_CONF_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "conf"


@dataclass(frozen=True, eq=False)  # identity-hashed, so resolved endpoints can be memoised per spec
class ModelSpec:
    """What the engine knows of a model: where it is served, whether it is chat, what it costs."""

    name: str
    provider: str = "openai"
    chat: bool = True
    price_per_1k: dict = field(default_factory=lambda: {"prompt": 0.0, "completion": 0.0})
    price_is_nominal: bool = False  # a local model priced for budgeting: summaries say nothing was billed
    context_length: int = 4096
    base_url: str | None = None
    api_version: str | None = None
    api_key_env: str | None = None
    deployment: str | None = None  # the name the server knows the model by (Azure deployment); default: name
    ignores_n: bool = False  # the provider returns one choice whatever `n` says: fan out
    threads: int | None = None  # embedded models: CPU threads of the server (default: all cores)
    # Upper bound on the tokens a request adds beyond its text (chat template, injected system prompt),
    # used only for worst-case budget reservations; 8 more are counted per message.
    prompt_overhead_tokens: int = 32
    # Tokens a server may return beyond max_tokens per choice (llama.cpp completes a multi-byte character),
    # for the same bounds.
    completion_margin_tokens: int = 4
    description: str = ""

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ConfigError(f"model {self.name!r}: provider must be one of {PROVIDERS}, got {self.provider!r}")
        price = self.price_per_1k or {}
        for part in ("prompt", "completion"):
            value = price.get(part)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model {self.name!r}: price_per_1k.{part} must be a number >= 0, got {value!r}")

    @property
    def prompt_price(self) -> float:
        return float(self.price_per_1k["prompt"]) / 1000.0

    @property
    def completion_price(self) -> float:
        return float(self.price_per_1k["completion"]) / 1000.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"model {data.get('name')!r}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


class ModelCatalog:
    """Model specs by name, loaded from a folder of YAML files; more can be added at run time."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder else conf_dir() / "model"
        self._specs: dict[str, ModelSpec] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.yaml")):
                data = yaml.safe_load(path.read_text()) or {}
                self.add(ModelSpec.from_dict(data))

    def copy(self) -> "ModelCatalog":
        copy = ModelCatalog.__new__(ModelCatalog)
        copy.folder, copy._specs = self.folder, dict(self._specs)
        return copy

    def with_model(self, spec: ModelSpec | dict) -> "ModelCatalog":
        """A copy with `spec` added (or replacing the entry of its name); this catalog is unchanged."""
        copy = self.copy()
        copy.add(spec)
        return copy

    def add(self, spec: ModelSpec | dict) -> ModelSpec:
        if isinstance(spec, dict):
            spec = ModelSpec.from_dict(spec)
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModelError(name, str(self.folder)) from None

    def cost(self, model: str, usage: dict | None) -> float:
        """Dollars for a response's reported usage; nothing is guessed when usage is missing."""
        spec = self.get(model)
        if not usage:
            raise ConfigError(f"response for {model!r} has no `usage`: its cost cannot be computed")
        return (usage.get("prompt_tokens", 0) or 0) * spec.prompt_price + (
            usage.get("completion_tokens", 0) or 0
        ) * spec.completion_price
