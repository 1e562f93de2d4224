"""The process-wide defaults behind the seed API's classmethods: catalog, cache root, seed, clients.

Only long-lived resources live here (open LMDB handles, HTTP clients, the embedded server); per-run
state such as money spent belongs to the objects made for that run (see `engine.tuning`).
"""
from __future__ import annotations

import threading

from .cache import CacheRoot
from .models import ModelCatalog
from .providers import ProviderClient
from .requests import Requester

DEFAULT_SEED = 41
DEFAULT_CACHE_PATH = ".cache"


class Session:
    def __init__(self, seed: int | str = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH,
                 catalog: ModelCatalog | None = None, providers: ProviderClient | None = None):
        self.seed = seed
        self.catalog = catalog or ModelCatalog()
        self.providers = providers or ProviderClient()
        self.requester = Requester(self.catalog, CacheRoot(cache_path), self.providers)
        self.last_eval_func = None  # the seed API's test() falls back to the one last given to tune()

    def set_cache(self, seed: int | str = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH) -> None:
        self.seed = seed
        if str(self.requester.caches.root) != str(cache_path):
            # handles stay open (shared per process): another session may be using the same folder
            self.requester.caches = CacheRoot(cache_path)


_default: Session | None = None
_lock = threading.Lock()


def default_session() -> Session:
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = Session()
    return _default
