"""The search space: a plain dict of FLAML domains, built in one function, and its decoding.

Prompts, chat prefixes and stop lists are searched by index (FLAML samples numbers, not callables);
`decode` turns a sample back into a config that `create`, `test` and the registry accept.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from ..core.config import DEFAULT_MAX_TOKENS, DEFAULT_MODEL, DEFAULT_N, DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from ..core.errors import ConfigError
from .flaml_adapter import BlendSearch, Categorical, Domain, Float, Integer, bounds, describe, tune

def default_space() -> dict:
    """What is searched unless the caller says otherwise (the caller's `**config` updates it); the ranges
    are the schema's (engine.core.config), written there once."""
    return {
        "model": DEFAULT_MODEL,
        "temperature_or_top_p": tune.choice([{"temperature": to_domain(DEFAULT_TEMPERATURE, "temperature")},
                                             {"top_p": to_domain(DEFAULT_TOP_P, "top_p")}]),
        "max_tokens": to_domain(DEFAULT_MAX_TOKENS, "max_tokens"),
        "n": to_domain(DEFAULT_N, "n"),
        "prompt": "{prompt}",
    }


@dataclass
class SearchSpace:
    """The FLAML space plus the lookup tables its indices refer to."""

    space: dict
    models: list[str]
    prompts: list | None = None
    messages: list | None = None
    stops: list | None = None
    constants: dict = field(default_factory=dict)
    entries: dict = field(default_factory=dict)  # model -> its config_list entries, when a config_list is searched
    # the endpoints every config is sent to: kept out of the FLAML space, so that no trial config FLAML holds
    # (the analysis tune returns) carries their keys; `decode` adds them back
    config_list: list | None = None

    def decode(self, sample: dict) -> dict:
        """A FLAML sample -> a request config (templates, stop list, flat sampling parameters)."""
        flat: dict[str, Any] = {}
        for key, value in sample.items():
            if key in ("subspace", "temperature_or_top_p") and isinstance(value, dict):
                flat.update(self.decode(value))
            else:
                flat[key] = value
        if self.prompts is not None and "prompt" in flat:
            flat["prompt"] = self.prompts[flat["prompt"]]
        if self.messages is not None and "messages" in flat:
            flat["messages"] = self.messages[flat["messages"]]
        if self.stops is not None and "stop" in flat:
            flat["stop"] = self.stops[flat["stop"]]
            if flat["stop"] is None:
                del flat["stop"]
        for k in ("n", "max_tokens"):
            if k in flat:
                flat[k] = int(flat[k])
        entries = self.endpoints(flat.get("model"))
        if entries:
            flat["config_list"] = entries
        return flat

    def endpoints(self, model: str | None) -> list | None:
        """The config_list entries that serve `model` in this search (None: the model's own endpoint)."""
        return self.entries.get(model, self.config_list)

    def choice_key(self, config: dict) -> tuple:
        """What a config's cost depends on besides max_tokens and n: model and prompt/prefix."""
        prompt = config.get("prompt", config.get("messages"))
        return config.get("model"), _label(prompt)

    def bounds(self, name: str) -> tuple[float, float]:
        """(lowest, highest) value a numeric hyperparameter can take anywhere in the space."""
        values = list(_domains_named(self.space, name))
        if not values:
            raise KeyError(name)
        lows, highs = zip(*(bounds(v) for v in values))
        return min(lows), max(highs)

    def size(self) -> float:
        """Number of distinct configs (math.inf when a continuous domain is searched)."""
        return _size(self.space)


def build_space(overrides: dict | None = None) -> SearchSpace:
    """The default space updated by `overrides`, validated, with templates replaced by indices."""
    overrides = dict(overrides or {})
    space = default_space()
    if "messages" in overrides:
        space.pop("prompt")
    if "temperature" in overrides and "top_p" in overrides:
        raise ConfigError("give temperature or top_p to search, not both: they should not vary together")
    for name in ("temperature", "top_p"):
        if name in overrides:
            space["temperature_or_top_p"] = {name: overrides.pop(name)}
    if "temperature_or_top_p" in overrides:
        space["temperature_or_top_p"] = overrides.pop("temperature_or_top_p")
    space.update(overrides)
    if "prompt" in space and "messages" in space:
        raise ConfigError("give either `prompt` or `messages` to search, not both")

    result = SearchSpace(space, models=[])
    if "prompt" in space:
        result.prompts = _as_choices(space["prompt"], lambda p: isinstance(p, (list, tuple)))
        space["prompt"] = tune.choice(list(range(len(result.prompts))))
    else:
        msgs = space["messages"]
        nested = isinstance(msgs, list) and msgs and isinstance(msgs[0], list)
        result.messages = list(msgs) if nested else [msgs]
        space["messages"] = tune.choice(list(range(len(result.messages))))
    if space.get("stop") is not None:
        stops = space["stop"]
        nested = isinstance(stops, list) and stops and all(isinstance(s, list) or s is None for s in stops)
        result.stops = list(stops) if nested else [stops]
        space["stop"] = tune.choice(list(range(len(result.stops))))
    _check_positive(space)

    models = space.pop("model")
    if isinstance(models, Categorical):
        models = list(models.categories)
    result.config_list = space.pop("config_list", None)
    entries = _entries_by_model(result.config_list) if "model" not in overrides else {}
    if "model" not in overrides and result.config_list and not entries:
        raise ConfigError("the config_list names no model and no `model` is given: say which to search, "
                          "model=NAME or model=tune.choice([...]) (the embedded default serves no config_list)")
    if entries:  # 0.1.x: the models of a config_list are searched, each with its own entries
        models = list(entries)
        result.entries = entries
    result.models = list(models) if isinstance(models, (list, tuple)) else [models]
    if len(result.models) == 1:
        space["model"] = result.models[0]
    else:  # hierarchical: every model gets its own sampling hyperparameters
        sub = {k: space.pop(k) for k in ("max_tokens", "temperature_or_top_p", "n") if k in space}
        space["subspace"] = tune.choice([{"model": m, **sub} for m in result.models])
    result.constants = {k: v for k, v in space.items() if not isinstance(v, (Domain, dict))}
    return result


def _entries_by_model(config_list) -> dict[str, list]:
    """{model: the entries that serve it} of a config_list, models in first-seen order: an entry serves the
    model it names, and an entry that names none serves every model (as 0.1.x merged the config's model into
    it); {} when no entry names a model."""
    if not isinstance(config_list, list) or not all(isinstance(e, dict) for e in config_list):
        return {}
    models = list(dict.fromkeys(e["model"] for e in config_list if e.get("model")))
    return {m: [e for e in config_list if e.get("model") in (m, None, "")] for m in models}


def starting_points(space: "SearchSpace", metric: str, mode: str) -> list[dict] | None:
    """EcoOptiGen's start for several models: the search's first config, then the same settings on every other
    model, so each model is tried once before the search moves on (None for one model)."""
    if len(space.models) < 2:
        return None

    first = BlendSearch(metric=metric, mode=mode, space=space.space).suggest("start")
    sub = first["subspace"]
    return [first] + [{**first, "subspace": {**sub, "model": m}} for m in space.models if m != sub["model"]]


def _as_choices(value, is_list) -> list:
    choices = list(value) if is_list(value) else [value]
    if not choices:
        raise ConfigError("an empty list of prompts cannot be searched")
    for c in choices:
        if not isinstance(c, str) and not callable(c):
            raise ConfigError(f"a prompt must be a str or a callable template, got {type(c).__name__}")
    return choices


def _check_positive(space: dict) -> None:
    for name in ("n", "max_tokens"):
        value = space.get(name)
        if value is None:
            continue
        if isinstance(value, Categorical) and not all(isinstance(c, int) for c in value.categories):
            raise ConfigError(f"{name} must be a whole number, got {describe(value)}")
        low = bounds(value)[0] if isinstance(value, Domain) else value
        if not isinstance(low, (int, float)) or low < 1:
            raise ConfigError(f"{name} must be >= 1 everywhere in the search space, got {describe(value)}")


def _label(template) -> str:
    """Tells templates apart: two lambdas share a __qualname__, so callables are told by identity."""
    if isinstance(template, list):
        return "|".join(_label(m.get("content")) if isinstance(m, dict) else _label(m) for m in template)
    return template if isinstance(template, str) else f"callable@{id(template)}"


def _domains_named(space: dict, name: str):
    for key, value in space.items():
        if key == name:
            yield value
        elif isinstance(value, dict):
            yield from _domains_named(value, name)
        elif isinstance(value, Categorical):
            for cat in value.categories:
                if isinstance(cat, dict):
                    yield from _domains_named(cat, name)


def _size(value) -> float:
    if isinstance(value, dict):
        return math.prod(_size(v) for v in value.values()) if value else 1
    if isinstance(value, Categorical):
        return sum(_size(c) for c in value.categories)
    if isinstance(value, Integer):
        return value.upper - value.lower
    if isinstance(value, Float):
        return math.inf
    return 1


DOMAINS = ("uniform", "loguniform", "quniform", "randint", "lograndint", "qrandint", "choice", "randn")


FORMS = ("a number, a list of numbers to choose among (or [choice, a, b, ...]), or [name, low, high] with name "
         "one of uniform, loguniform, quniform, randint, lograndint, qrandint, randn")


def to_domain(value: Any, path: str):
    """YAML -> FLAML. `[uniform, 0, 2]` (or `{uniform: [0, 2]}`) is a domain, `[choice, a, b]` or a list of
    numbers a choice, a number a constant. The list form overrides cleanly: `search.max_tokens=[randint,4,12]`.
    A name that is not a domain (`[uniformm, 0, 1]`) is an error naming the key, never a choice among strings."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        if value[0] not in DOMAINS:
            near = difflib.get_close_matches(value[0], DOMAINS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"{path}: {value[0]!r} is not a search domain{hint}; write {FORMS}")
        value = {value[0]: list(value[1:])}
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in DOMAINS:
            raise ConfigError(f"{path}: a search domain is one of {DOMAINS} with its arguments, e.g. "
                              f"{{uniform: [0, 2]}}; got {value!r}")
        name, args = next(iter(value.items()))
        args = list(args) if isinstance(args, (list, tuple)) else [args]
        if name == "choice":
            return tune.choice(args)
        try:
            return getattr(tune, name)(*args)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {name}{tuple(args)} is not a valid domain: {exc}") from None
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, (str, list, dict)) for v in value):
            raise ConfigError(f"{path}: {list(value)!r} is not a list of numbers; write {FORMS}")
        return tune.choice(list(value))
    if isinstance(value, str):
        raise ConfigError(f"{path}: {value!r} is not a number; write {FORMS}")
    return value


