"""Resolve where a request goes: a model spec plus optional per-endpoint overrides (a config_list entry)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...core.errors import ConfigError, MissingCredentialsError
from ...core.models import ModelSpec

# Keys a config_list entry (or a config) may carry to reach an endpoint; none of them enters a cache key
# except through `Endpoint.identity()`, and credentials never do.
ENDPOINT_KEYS = frozenset({"api_key", "api_key_env", "base_url", "api_type", "api_version", "organization"})
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY", "compatible": None, "embedded": None}


@dataclass(frozen=True)
class Endpoint:
    """One concrete endpoint for one model. `api_key` is held in memory only and never printed."""

    provider: str
    model: str  # catalog name: prices and routing
    api_model: str  # the name sent to the server (the deployment for Azure)
    chat: bool
    ignores_n: bool
    base_url: str | None = None
    api_version: str | None = None
    organization: str | None = field(default=None, repr=False)
    server_options: tuple = ()  # the embedded server's settings ((name, value), ...) from the model's config
    api_key: str | None = field(default=None, repr=False, compare=False)
    limits: tuple = field(default=(), repr=False, compare=False)  # its model's (floor, ceiling, start) in flight

    def identity(self) -> dict:
        """What makes this endpoint's answers distinct; goes into cache keys. Never a credential."""
        base = None if self.provider == "embedded" else self.base_url
        return {"provider": self.provider, "base_url": base, "api_version": self.api_version, "model": self.api_model}

    def describe(self) -> str:
        where = self.base_url or ("api.openai.com" if self.provider == "openai" else self.provider)
        return f"{self.provider} endpoint {where} (model {self.api_model})"


MEMO_SIZE = 1024  # resolved endpoints kept per memo (a session's catalog holds one)


def resolve_endpoint(spec: ModelSpec, overrides: dict | None = None, memo: dict | None = None) -> Endpoint:
    """Merge a model spec with overrides; look the key up in the environment; fail early if it is missing.

    With `memo` (the session's: `ModelCatalog.endpoints`), memoised on the spec, the overrides and the
    environment variables read, so the cache-hit path does not rebuild an Endpoint per call, yet a changed
    environment is seen at once. The memo holds keys, so it lives and dies with its session, never in a
    module-level cache.
    """
    o = overrides or {}
    provider = o.get("api_type") or spec.provider
    if o and _elsewhere(provider, o):  # served at the entry's own base_url: not by the engine nor by api.openai.com
        provider = "compatible"
        o = dict(o, api_type=provider)
    key_env = o.get("api_key_env") or spec.api_key_env or DEFAULT_KEY_ENV.get(provider)
    env = (os.environ.get(key_env) if key_env else None,
           *((os.environ.get("AZURE_OPENAI_ENDPOINT"), os.environ.get("OPENAI_API_VERSION"))
             if provider == "azure" else (None, None)))
    if memo is None:
        return _resolve(spec, tuple(sorted(o.items())) if o else (), key_env, env)
    key = (spec, tuple(sorted(o.items())) if o else (), key_env, env)
    endpoint = memo.get(key)
    if endpoint is None:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        endpoint = memo[key] = _resolve(*key)
    return endpoint


def _elsewhere(provider: str, overrides: dict) -> bool:
    """An entry gives its own base_url for an embedded or OpenAI model: a compatible server there serves it
    (an OpenAI key from the environment is not sent to it; the entry's own key is)."""
    url = overrides.get("base_url")
    return bool(url) and (provider == "embedded" or (provider == "openai" and "api.openai.com" not in url))


def _resolve(spec: ModelSpec, override_items: tuple, key_env: str | None, env: tuple) -> Endpoint:
    o = dict(override_items)
    env_key, env_azure_endpoint, env_api_version = env
    provider = o.get("api_type") or spec.provider
    if provider not in DEFAULT_KEY_ENV:
        raise ConfigError(f"api_type must be one of {sorted(DEFAULT_KEY_ENV)}, got {provider!r}")
    base_url = o.get("base_url") or spec.base_url
    api_version = o.get("api_version") or spec.api_version
    if provider == "azure":
        base_url = base_url or env_azure_endpoint
        api_version = api_version or env_api_version
        if not base_url or not api_version:
            raise ConfigError(f"Azure model {spec.name!r} needs base_url (or AZURE_OPENAI_ENDPOINT) and api_version")
    if provider == "compatible" and not base_url:
        raise ConfigError(f"model {spec.name!r} is served by an OpenAI-compatible endpoint: set its base_url")
    key = o.get("api_key")
    if key is None:
        key = env_key
    if key is None and provider in ("openai", "azure"):
        raise MissingCredentialsError(f"no API key for {provider} model {spec.name!r}: set the environment variable {key_env}")
    api_model = spec.deployment or spec.name
    options = (("n_ctx", spec.context_length), ("threads", spec.threads)) if provider == "embedded" else ()
    return Endpoint(provider=provider, model=spec.name, api_model=api_model, chat=spec.chat,
                    ignores_n=spec.ignores_n, base_url=base_url, api_version=api_version,
                    organization=o.get("organization"), api_key=key, server_options=options,
                    limits=spec.concurrency_limits())
