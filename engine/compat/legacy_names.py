"""pyautogen 0.1.x's spellings, translated once at the facade so the engine's core speaks one vocabulary.

0.1.x (and the config lists its helpers load) wrote `api_base` for `base_url`, `retry_timeout` for
`max_retry_period`, `api_type: open_ai` for `openai`, and passed `api_key_path` and
`allow_format_str_template` that steer nothing here. `translate` rewrites a config and each of its
`config_list` entries; the core never sees the old names.
"""
from __future__ import annotations

from typing import Any, Mapping

RENAMED = {"api_base": "base_url", "retry_timeout": "max_retry_period"}
VALUES = {"api_type": {"open_ai": "openai"}}
DROPPED = frozenset({"api_key_path", "allow_format_str_template"})  # accepted for 0.1.x code, steer nothing


def _entry(entry: Mapping[str, Any]) -> dict:
    out = {}
    for key, value in entry.items():
        if key in DROPPED:
            continue
        key = RENAMED.get(key, key)
        out[key] = VALUES.get(key, {}).get(value, value) if isinstance(value, str) else value
    return out


_OLD_KEYS = frozenset(RENAMED) | DROPPED


def _old(entry: Mapping[str, Any]) -> bool:
    return not _OLD_KEYS.isdisjoint(entry.keys()) or entry.get("api_type") in VALUES["api_type"]


def translate(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """`config` with 0.1.x names replaced by the engine's, in its config_list entries too; `config` itself
    when it has none (the cache-hit path of `create` pays one set check, not a copy)."""
    entries = config.get("config_list")
    if not _old(config) and not (isinstance(entries, (list, tuple))
                                 and any(isinstance(e, Mapping) and _old(e) for e in entries)):
        return config
    out = _entry(config)
    entries = out.get("config_list")
    if isinstance(entries, (list, tuple)):
        out["config_list"] = [_entry(e) if isinstance(e, Mapping) else e for e in entries]
    return out
