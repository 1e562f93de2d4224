"""The response cache: one LMDB environment per `{cache_path}/{seed}`.

LMDB gives a single writer and many readers across processes, copy-on-write pages (a kill -9 never
leaves a half-written entry) and, with `sync=True`, a response that is on disk before it is returned.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import lmdb
import orjson

from .errors import CacheError
from .inflight import InFlight

DEFAULT_MAP_SIZE = 256 * 2**20  # virtual reservation, the file grows only as it fills


class ResponseCache:
    """Key (bytes) -> response (JSON-able dict), durable and shared between processes."""

    def __init__(self, path: str | os.PathLike, map_size: int = DEFAULT_MAP_SIZE):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(str(self.path), map_size=map_size, subdir=True, sync=True, metasync=True,
                                  readahead=False, max_dbs=0, max_readers=512)
        except (OSError, lmdb.Error) as exc:
            raise CacheError(f"cannot open the response cache at {self.path}: {exc}") from None
        self._write_lock = threading.Lock()
        self.inflight = InFlight(self.path / "inflight")  # requests being paid for by some process right now

    def get(self, key: bytes) -> dict | None:
        """The cached response, or None on a miss or an entry that cannot be decoded."""
        try:
            with self._env.begin() as txn:
                raw = txn.get(key)
        except lmdb.MapResizedError:  # another process grew the map: adopt its size and retry
            self._env.set_mapsize(0)
            return self.get(key)
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: bytes, value: dict) -> None:
        """Commit `value` durably; grows the map when it is full."""
        blob = orjson.dumps(value)
        with self._write_lock:
            for _ in range(32):
                try:
                    with self._env.begin(write=True) as txn:
                        txn.put(key, blob)
                    return
                except lmdb.MapFullError:
                    self._env.set_mapsize(self._env.info()["map_size"] * 2)
                except lmdb.MapResizedError:
                    self._env.set_mapsize(0)
                except lmdb.Error as exc:
                    raise CacheError(f"cannot write to the response cache at {self.path}: {exc}") from None
        raise CacheError(f"the response cache at {self.path} could not grow to fit a {len(blob)}-byte entry")

    def __len__(self) -> int:
        return self._env.stat()["entries"]

    def clear(self) -> None:
        """Drop every entry (the files stay, emptied)."""
        with self._write_lock:
            main_db = self._env.open_db()
            with self._env.begin(write=True) as txn:
                txn.drop(main_db, delete=False)

    def close(self) -> None:
        self.inflight.close()
        self._env.close()


class _OpenEnvironments:
    """LMDB allows one open handle per environment and process, so handles are shared by real path.

    This is process-wide on purpose (two sessions on one cache folder must share the handle); it holds
    no run state. A forked child starts with none: it must not use its parent's handles.
    """

    def __init__(self):
        self._caches: dict[str, ResponseCache] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self, path: Path, map_size: int) -> ResponseCache:
        key = os.path.realpath(path)
        cache = self._caches.get(key)
        if cache is None:
            with self._lock:
                cache = self._caches.get(key)
                if cache is None:
                    cache = self._caches[key] = ResponseCache(path, map_size)
        return cache

    def close(self, cache: ResponseCache) -> None:
        with self._lock:
            if self._caches.get(os.path.realpath(cache.path)) is cache:
                del self._caches[os.path.realpath(cache.path)]
                cache.close()

    def _forget(self) -> None:
        # kept referenced, never closed nor used: closing an LMDB environment inherited over fork is unsafe
        self._leftovers = list(self._caches.values())
        self._caches = {}
        self._lock = threading.Lock()


OPEN_ENVIRONMENTS = _OpenEnvironments()


class CacheRoot:
    """Opens `{root}/{seed}` caches on demand and keeps one handle per seed in this process."""

    def __init__(self, root: str | os.PathLike, map_size: int = DEFAULT_MAP_SIZE):
        self.root = Path(root)
        self.map_size = map_size
        self._caches: dict[int | str, ResponseCache] = {}  # a fast path to the shared handles
        self._pid = os.getpid()

    def for_seed(self, seed: int | str) -> ResponseCache:
        cache = self._caches.get(seed)
        if cache is None or self._pid != os.getpid():
            if self._pid != os.getpid():
                self._caches, self._pid = {}, os.getpid()
            cache = self._caches[seed] = OPEN_ENVIRONMENTS.get(self.root / str(seed), self.map_size)
        return cache

    def close(self) -> None:
        """Close this root's environments (other sessions on the same folder reopen on demand)."""
        for cache in self._caches.values():
            OPEN_ENVIRONMENTS.close(cache)
        self._caches = {}
