"""The Session: the one owner of every long-lived resource (model catalog, cache root, HTTP clients, the event
loop thread, the embedded servers).

The seed API's classmethods act on "the current session": the innermost `with Session(...)` of this context
(a block, a thread, a Ray worker, a test), else a default built on first use. Per-run state (money spent,
the pruning table, the best so far) is never kept here: it belongs to objects made for the run, like a Tuner.
A session made with `derive` shares its parent's clients, loop and servers (a Hydra multirun does not start
them again per job) and owns only its cache root and catalog.
"""
from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .requests.cache import CacheRoot
from .core.config import DEFAULT_MODEL, CacheConfig, RequestsConfig
from .core.models import ModelCatalog
from .requests.providers import ProviderClient, RetryPolicy
from .requests.providers.embedded import EmbeddedServer
from .requests.providers.endpoint import resolve_endpoint
from .requests.requester import Outcome, Requester, prepare

DEFAULT_SEED = CacheConfig.seed
DEFAULT_CACHE_PATH = CacheConfig.path


@dataclass
class RegistryMemo:
    """What a session remembers of the MLflow registry: where an alias pointed (and when it was looked up),
    and the config text of each version it downloaded."""

    sources: dict = field(default_factory=dict)  # (uri, tracking) -> (monotonic time, what it resolved to)
    configs: dict = field(default_factory=dict)  # (source, tracking) -> config JSON
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recent(self, key, ttl: float, compute):
        """`compute()`, reused for `ttl` seconds (an alias can move: it is looked up again after that)."""
        now = time.monotonic()
        with self.lock:
            hit = self.sources.get(key)
        if hit and now - hit[0] < ttl:
            return hit[1]
        value = compute()
        with self.lock:
            self.sources[key] = (now, value)
        return value

    def once(self, key, compute):
        """`compute()`, kept for the session's life (a version's files never change)."""
        with self.lock:
            value = self.configs.get(key)
        if value is None:
            value = compute()
            with self.lock:
                self.configs[key] = value
        return value


class Session:
    """`with Session(cache_path=..., seed=...) as s:` scopes everything in the block to `s`."""

    def __init__(self, seed: int | str = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH,
                 catalog: ModelCatalog | None = None, requests: RequestsConfig | None = None,
                 providers: ProviderClient | None = None):
        self.seed = seed
        self.catalog = catalog if catalog is not None else ModelCatalog()
        self._owns_providers = providers is None
        self.requests = requests or RequestsConfig()
        if providers is None:
            providers = ProviderClient(RetryPolicy.from_config(self.requests), self.requests.timeout)
        elif requests is not None:
            providers = providers.with_settings(RetryPolicy.from_config(requests), requests.timeout)
        self.providers = providers
        self.requester = Requester(self.catalog, CacheRoot(cache_path), providers)
        self.usage_log = None  # the seed API's start_logging() book-keeping (compat.usage_log), when on
        self.registry = RegistryMemo()  # promotions followed, versions downloaded (mlflow.registry)
        self.last_eval_func = None  # the seed API's test() falls back to the eval_func of the last tune()
        self._tokens: list[contextvars.Token] = []

    # ---- scope ----------------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        self._tokens.append(_current.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _current.reset(self._tokens.pop())
        self.close()

    def close(self) -> None:
        """Close this session's HTTP clients and loop, and leave the embedded servers (the last process to
        leave stops one); a derived session closes only what it owns."""
        if self._owns_providers:
            self.providers.close()

    def derive(self, seed: int | str | None = None, cache_path: str | None = None,
               catalog: ModelCatalog | None = None, requests: RequestsConfig | None = None) -> "Session":
        """A session of its own cache root, seed, catalog and request settings on this one's clients."""
        return Session(self.seed if seed is None else seed,
                       str(self.requester.caches.root) if cache_path is None else cache_path,
                       self.catalog if catalog is None else catalog,
                       self.requests if requests is None else requests, providers=self.providers)

    def set_requests(self, **changes) -> None:
        """Change how requests are sent from now on (fields of RequestsConfig: timeout, max_retry_period,
        retry_wait_time, max_wait, jitter)."""
        self.requests = replace(self.requests, **changes)
        self.providers = self.providers.with_settings(RetryPolicy.from_config(self.requests), self.requests.timeout)
        self.requester.providers = self.providers

    # ---- what the seed API does with it ---------------------------------------------------------
    def set_cache(self, seed: int | str = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH) -> None:
        """Responses go to `{cache_path}/{seed}` from now on (a running tune keeps the root it started with)."""
        self.seed = seed
        if str(self.requester.caches.root) != str(cache_path):
            # handles stay open (shared per process): another session may be using the same folder
            self.requester.caches = CacheRoot(cache_path)

    def create(self, config: Mapping[str, Any], context: Mapping | None = None, use_cache: bool = True,
               force_chat: bool = False) -> Outcome:
        """One completion for one context through the cache: the core of `Completion.create`."""
        requests = prepare(config, context, self.catalog, self.seed, force_chat)
        return self.requester.run(requests, use_cache)

    def embedded_server(self, model: str = DEFAULT_MODEL) -> EmbeddedServer:
        """The embedded server that serves `model` (started on first use)."""
        return self.providers.embedded(resolve_endpoint(self.catalog.get(model), None, self.catalog.endpoints))


_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar("engine_session", default=None)
_default: Session | None = None
_default_lock = threading.Lock()


def current_session() -> Session:
    """The session of this context: the innermost `with Session(...)`, else the process's default."""
    session = _current.get()
    return session if session is not None else _default_session()


def _default_session() -> Session:
    """The process's default session, built on first use (the seed API's classmethods need no setup)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Session()
    return _default
