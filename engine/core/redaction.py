"""What of a config may leave the process (logs, JSONL, MLflow, saved files): JSON-safe, no credentials.

Credentials only ever come from the environment, but a caller may still pass `api_key` in a
`config_list` entry; it is used in memory and replaced by a marker in anything written.
"""
from __future__ import annotations

from typing import Any, Mapping

from .secret_shapes import is_credential_name, redact_text

REDACTED = "***"


def public_view(config: Mapping[str, Any]) -> dict:
    """A copy safe to write: callable templates by name, credentials redacted at any depth: fields named as
    credentials in any spelling, key-shaped values, passwords inside URLs."""
    def safe(key, v):
        if key is not None and is_credential_name(key) and v is not None:
            return REDACTED
        if isinstance(v, str):
            return redact_text(v)
        if callable(v):
            return getattr(v, "__qualname__", repr(v))
        if isinstance(v, Mapping):
            return {k: safe(k, x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [safe(None, x) for x in v]
        return v
    return safe(None, dict(config))
