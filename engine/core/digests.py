"""Stable identifiers: `get_key` for configs (hashable, order-free) and the cache digest of a request."""
from __future__ import annotations

import hashlib

import orjson
from typing import Any

from .secret_shapes import is_credential_name

_DICT = "__dict__"  # tags dicts so that {"a": 1} and [["a", 1]] never share a key


# Never part of an identifier (it is printed, logged, used as a dict key in saved histories): credentials, at
# any depth (config_list entries carry them) ...
_CREDENTIALS_ALSO = frozenset({"api_key_path"})
# ... and, at the top level, where the config is served, as the seed library (0.1.x) dropped them.
_ENDPOINT = frozenset({"api_base", "api_type", "api_version"})


def get_key(config: Any) -> Any:
    """A hashable identifier of a config, equal for equal configs whatever the dict key order.

    Dicts and lists may nest in any way; lists keep their order (it is meaningful: stop lists,
    chat messages), dicts do not. Credentials never enter it; nor, at the top level, the endpoint.
    """
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in _ENDPOINT}
    return _key(config)


def _key(config: Any) -> Any:
    if isinstance(config, dict):
        items = [(k, _key(v)) for k, v in config.items()
                 if k not in _CREDENTIALS_ALSO and not (isinstance(k, str) and is_credential_name(k))]
        items.sort(key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        return (_DICT, tuple(items))
    if isinstance(config, (list, tuple)):
        return tuple(_key(x) for x in config)
    if isinstance(config, set):
        return frozenset(_key(x) for x in config)
    return config


def request_digest(request: dict) -> bytes:
    """16-byte digest of a request as sent: JSON with sorted keys, so key order never matters.

    The caller passes only what defines the answer (model, prompt/messages after templating,
    sampling parameters, provider identity); credentials and transport settings never get here.
    """
    blob = orjson.dumps(request, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(blob, digest_size=16).digest()
