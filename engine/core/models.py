"""The model catalog: one YAML file per model under `conf/model/` holds its provider and price.

The same files are the Hydra `model` config group, so the price table lives in config, once.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .secret_shapes import URL_PASSWORD, VARIABLE_NAME
from .errors import BudgetError, ConfigError, UnknownModelError
from .prices import list_price_per_1k

logger = logging.getLogger("engine")
PROVIDERS = ("openai", "azure", "compatible", "embedded")
# Requests in flight to one endpoint when a model file does not say: a hosted API takes many at once; the
# embedded llama.cpp server answers one at a time (a second one queued keeps it busy between answers).
DEFAULT_CONCURRENCY = {"hosted": {"floor": 1, "ceiling": 64, "start": 8},
                       "embedded": {"floor": 1, "ceiling": 2, "start": 2}}


def conf_dir() -> Path:
    """The project's `conf/` folder (override with ENGINE_CONF_DIR): `engine/conf` in an installed package
    (shipped as package data, with `engine/experiments` beside it), else the source tree's `conf/`."""
    env = os.environ.get("ENGINE_CONF_DIR")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent  # engine/
    return package / "conf" if (package / "conf" / "config.yaml").is_file() else package.parent / "conf"


@dataclass(frozen=True, eq=False)  # identity-hashed, so resolved endpoints can be memoised per spec
class ModelSpec:
    """What the engine knows of a model: where it is served, whether it is chat, what it costs."""

    name: str
    provider: str = "openai"
    chat: bool = True
    price_per_1k: dict = field(default_factory=lambda: {"prompt": 0.0, "completion": 0.0})
    price_is_nominal: bool = False  # a local model priced for budgeting: summaries say nothing was billed
    price_known: bool = True  # False: a model served through a config_list entry that no price table knows
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
    # Requests in flight to its endpoint (engine/requests/providers/limiter.py): {floor, ceiling, start}; the
    # limit adapts between floor and ceiling. Missing keys: DEFAULT_CONCURRENCY of its provider.
    concurrency: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if self.api_key_env is not None and not VARIABLE_NAME.match(str(self.api_key_env)):
            raise ConfigError(f"model {self.name!r}: api_key_env takes the NAME of an environment variable (e.g. "
                              "OPENAI_API_KEY); the value given is not one (it may be a key, so it is not shown)")
        if self.base_url and URL_PASSWORD.search(self.base_url):
            raise ConfigError(f"model {self.name!r}: base_url holds a password (user:...@host); keys come from the "
                              "environment only (api_key_env)")
        if self.provider not in PROVIDERS:
            raise ConfigError(f"model {self.name!r}: provider must be one of {PROVIDERS}, got {self.provider!r}")
        self.concurrency_limits()  # raises on bad bounds
        price = self.price_per_1k or {}
        for part in ("prompt", "completion"):
            value = price.get(part)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model {self.name!r}: price_per_1k.{part} must be a number >= 0, got {value!r}")

    def concurrency_limits(self) -> tuple[int, int, int]:
        """(floor, ceiling, start) of its requests in flight: its `concurrency`, else its provider's default."""
        given = self.concurrency or {}
        unknown = set(given) - {"floor", "ceiling", "start"}
        if unknown:
            raise ConfigError(f"model {self.name!r}: concurrency takes floor, ceiling and start, not {sorted(unknown)}")
        default = DEFAULT_CONCURRENCY["embedded" if self.provider == "embedded" else "hosted"]
        values = {k: given.get(k, default[k]) for k in ("floor", "ceiling", "start")}
        if "start" not in given:  # a ceiling below the default start starts there
            values["start"] = max(values["floor"], min(values["start"], values["ceiling"]))
        floor, ceiling, start = (values[k] for k in ("floor", "ceiling", "start"))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (floor, ceiling, start)) \
                or not 1 <= floor <= start <= ceiling:
            raise ConfigError(f"model {self.name!r}: concurrency needs integers 1 <= floor <= start <= ceiling, "
                              f"got {values}")
        return floor, ceiling, start

    @property
    def prompt_price(self) -> float:
        self._require_price()
        return float(self.price_per_1k["prompt"]) / 1000.0

    @property
    def completion_price(self) -> float:
        self._require_price()
        return float(self.price_per_1k["completion"]) / 1000.0

    def _require_price(self) -> None:
        """Budgets and tunes price requests before sending them: a model without a price stops them there."""
        if not self.price_known:
            raise BudgetError(f"model {self.name!r} has no known price (no conf/model/{self.name}.yaml, not in the "
                              "genai-prices table), so no budget can be kept and no tune can weigh its cost: add "
                              f"conf/model/{self.name}.yaml with `price_per_1k: {{prompt: .., completion: ..}}`, or "
                              "current_session().catalog.add({...})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"model {data.get('name')!r}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


# Names of the text-completion (not chat) models among those without a file (the seed library's chat_models
# listed the others).
_TEXT_MODELS = re.compile(r"^(gpt-3\.5-turbo-instruct|gpt-35-turbo-instruct|text-|code-|davinci|babbage|curie|ada)")
# config_list entry keys that say where a model is served
_WHERE = ("base_url", "api_type")


def inferred_spec(name: str, entry: dict | None = None) -> ModelSpec | None:
    """A spec for a model without a file in conf/model/: priced from the genai-prices table, or, when a
    config_list entry says where it is served, with its price marked unknown. None: nothing is known of it."""
    entry = entry or {}
    price = list_price_per_1k(name, entry.get("api_type"))
    if price is None and not any(entry.get(k) for k in _WHERE):
        return None
    source = "list price from genai-prices" if price else "no known price: cost reported as 0"
    return ModelSpec(name=name, provider="openai", chat=not _TEXT_MODELS.match(name),
                     price_per_1k=price or {"prompt": 0.0, "completion": 0.0}, price_known=price is not None,
                     description=f"{name} without a conf/model file ({source})")


class ModelCatalog:
    """Model specs by name, loaded from a folder of YAML files; more can be added at run time."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder else conf_dir() / "model"
        self._specs: dict[str, ModelSpec] = {}
        self._warned: set[str] = set()
        self.endpoints: dict = {}  # resolved endpoints (requests.providers.endpoint), keys included: this session's
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.yaml")):
                data = yaml.safe_load(path.read_text()) or {}
                self.add(ModelSpec.from_dict(data))

    def __getstate__(self) -> dict:
        """Pickled (to a Ray worker) without the resolved endpoints: they hold keys, which never travel."""
        return {**self.__dict__, "endpoints": {}}

    def copy(self) -> "ModelCatalog":
        copy = ModelCatalog.__new__(ModelCatalog)
        copy.folder, copy._specs, copy._warned, copy.endpoints = self.folder, dict(self._specs), set(), {}
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

    def get(self, name: str, entry: dict | None = None) -> ModelSpec:
        """The spec of `name`: its conf/model file, else one inferred from the price table and, when given, the
        config_list `entry` that serves it (remembered for later lookups by name)."""
        try:
            return self._specs[name]
        except KeyError:
            pass
        spec = inferred_spec(name, entry)
        if spec is None:
            raise UnknownModelError(name, str(self.folder))
        return self._specs.setdefault(name, spec)

    def cost(self, model: str, usage: dict | None) -> float:
        """Dollars for a response's reported usage; nothing is guessed when usage is missing."""
        spec = self._specs.get(model) or self.get(model)
        if not usage:
            raise ConfigError(f"response for {model!r} has no `usage`: its cost cannot be computed")
        if not spec.price_known:
            if model not in self._warned:
                self._warned.add(model)
                logger.warning("model %r has no known price (no %s/%s.yaml, not in genai-prices): its cost is "
                               "reported as 0", model, self.folder, model)
            return 0.0
        price = spec.price_per_1k  # known here: the same figures as prompt_price/completion_price, fewer calls
        return (usage.get("prompt_tokens", 0) or 0) * (float(price["prompt"]) / 1000.0) + (
            usage.get("completion_tokens", 0) or 0
        ) * (float(price["completion"]) / 1000.0)
