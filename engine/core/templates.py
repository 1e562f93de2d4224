"""Instantiate prompt and chat-message templates with a context (one data point)."""
from __future__ import annotations

import re
import string
from typing import Any, Callable, Mapping

from .errors import ConfigError, TemplateKeyError

Template = str | Callable[[Mapping[str, Any]], str]


def render(template: Template, context: Mapping[str, Any] | None, index: int | None = None) -> str:
    """`str.format(**context)` for a string, `template(context)` for a callable."""
    if isinstance(template, str):
        if not context or "{" not in template:
            return template  # as the seed library does: no context, no formatting (literal braces stay)
        try:
            return template.format(**context)
        except KeyError as exc:
            raise TemplateKeyError(str(exc.args[0]), index) from None
        except (IndexError, ValueError) as exc:
            raise ConfigError(f"prompt template {template[:60]!r} cannot be formatted: {exc}") from None
    if callable(template):
        try:
            out = template(context or {})
        except KeyError as exc:
            raise TemplateKeyError(str(exc.args[0]), index) from None
        if not isinstance(out, str):
            raise ConfigError(f"callable template {template!r} returned {type(out).__name__}, not str")
        return out
    raise ConfigError(f"a template must be a str or a callable, got {type(template).__name__}")


def render_messages(messages: list, context: Mapping[str, Any] | None, index: int | None = None) -> list[dict]:
    """Render the `content` of every message; other fields (role, name) pass through."""
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise ConfigError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for m in messages:
        if "role" not in m or "content" not in m:
            raise ConfigError(f"message {dict(m)!r} needs 'role' and 'content'")
        rendered = dict(m)
        rendered["content"] = render(m["content"], context, index)
        out.append(rendered)
    return out


def template_fields(template: Template) -> set[str]:
    """The context keys a str template formats (`{a}`, `{point.x}`, `{row[0]}` -> a, point, row); a callable's
    are unknown (empty)."""
    if not isinstance(template, str):
        return set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"prompt template {template[:60]!r} cannot be formatted: {exc}") from None
    return {re.split(r"[.\[]", name, maxsplit=1)[0] for _, name, _, _ in parsed
            if name and not name.isdigit()}


def config_fields(config: Mapping[str, Any]) -> list[str]:
    """The fields a config's prompt (or its messages) needs from each data point, sorted."""
    templates = [config.get("prompt")] if "prompt" in config else [
        m.get("content") for m in config.get("messages") or [] if isinstance(m, Mapping)]
    return sorted(set().union(*(template_fields(t) for t in templates if t is not None)))


def check_text(data, where: str = "data") -> None:
    """Every string in the data points encodes as UTF-8: a lone surrogate (`\\ud83d`, from a JSON file cut
    mid-emoji) would fail in the middle of a run, after requests were paid, or in MLflow's dataset logging."""
    def visit(value, path: str) -> None:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ConfigError(f"{where}: {path} holds text that is not valid Unicode ({exc.reason} "
                                  f"{value[exc.start:exc.end]!r} at position {exc.start}); fix the data "
                                  "(a lone surrogate often comes from an emoji cut in two)") from None
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(key, f"{path} key {key!r}" if isinstance(key, str) else path)
                visit(item, f"{path}, field {key!r}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{path}[{i}]")

    for index, point in enumerate(data):
        visit(point, f"data point {index}")
