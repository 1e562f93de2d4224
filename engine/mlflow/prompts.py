"""A tuned config in MLflow 3's Prompt Registry: its template (or chat messages) as a prompt version, and its
model and sampling settings as the version's `model_config`, so the team finds the winner on the UI's Prompts
page (versions, commit messages, diffs, aliases) and loads it by `prompts:/NAME@alias`.

The engine's templates are `str.format` strings (`{question}`, `{{` for a brace); MLflow's are `{{question}}`
with single braces literal. `to_mlflow` and `from_mlflow` translate exactly, and a template MLflow cannot
represent (a format spec, an attribute or index lookup, a callable) is not registered as a prompt (the
pyfunc model version still holds it).
"""
from __future__ import annotations

import re
import string
from typing import Any

MLFLOW_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SAMPLING = ("temperature", "top_p", "max_tokens", "top_k", "frequency_penalty", "presence_penalty")


def prompt_name(model_name: str) -> str:
    """MLflow keeps one namespace for models and prompts: the prompt of model `arith` is `arith-prompt`."""
    return f"{model_name}-prompt"


def to_mlflow(template: Any) -> str | None:
    """`What is {a}? {{x}}` -> `What is {{a}}? {x}`; None when MLflow's format cannot say the same."""
    if not isinstance(template, str):
        return None
    out = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for literal, field, spec, conversion in parts:
        if "{{" in literal or "}}" in literal:  # would read as a variable in MLflow's format
            return None
        out.append(literal)
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            return None
        out.append("{{" + field + "}}")
    return "".join(out)


def from_mlflow(template: str) -> str:
    """`What is {{a}}? {x}` -> `What is {a}? {{x}}` (the engine's str.format template)."""
    pieces, last = [], 0
    for match in MLFLOW_VARIABLE.finditer(template):
        pieces.append(template[last:match.start()].replace("{", "{{").replace("}", "}}"))
        pieces.append("{" + match.group(1) + "}")
        last = match.end()
    pieces.append(template[last:].replace("{", "{{").replace("}", "}}"))
    return "".join(pieces)


def as_prompt(config: dict, provider: str | None = None) -> tuple[Any, dict] | None:
    """(template or messages in MLflow's format, model_config) for a config; None when it cannot be one."""
    if "messages" in config:
        messages = []
        for message in config["messages"] or []:
            content = to_mlflow(message.get("content")) if isinstance(message, dict) else None
            if content is None:
                return None
            messages.append({**message, "content": content})
        template = messages
    else:
        template = to_mlflow(config.get("prompt"))
        if template is None:
            return None
    model_config: dict = {"model_name": config.get("model")}
    if provider:
        model_config["provider"] = provider
    extra = {}
    for key, value in config.items():
        if key in ("model", "prompt", "messages"):
            continue
        if key in SAMPLING and value is not None:
            model_config[key] = value
        elif key == "stop" and isinstance(value, (list, tuple)):
            model_config["stop_sequences"] = list(value)
        else:
            extra[key] = value  # n, a stop given as one string, anything else the config sets
    if extra:
        model_config["extra_params"] = extra
    return template, model_config


def as_config(template: Any, model_config: dict | None) -> dict:
    """The engine's config from a prompt version (the inverse of `as_prompt`)."""
    model_config = dict(model_config or {})
    config: dict = {"model": model_config.get("model_name")}
    if isinstance(template, list):
        config["messages"] = [{**m, "content": from_mlflow(m.get("content") or "")} for m in template]
    else:
        config["prompt"] = from_mlflow(template)
    for key in SAMPLING:
        if model_config.get(key) is not None:
            config[key] = model_config[key]
    if model_config.get("stop_sequences"):
        config["stop"] = list(model_config["stop_sequences"])
    config.update(model_config.get("extra_params") or {})
    return config
