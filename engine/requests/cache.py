"""The response cache: one LMDB environment per `{cache_path}/{seed}`.

LMDB gives a single writer and many readers across processes, copy-on-write pages (a kill -9 never
leaves a half-written entry) and, with `sync=True`, a response that is on disk before it is returned.

What the disk can do to it is said in words, never left to a crash: a data file shorter than LMDB's own
record of it (a copy cut short, a full disk) would end the process with SIGBUS at the first read, so it is
refused at open; damaged pages stop the run naming the file; and when the disk refuses a write (full, an
I/O error, the folder deleted under a running tune) the answer, already paid for, is kept in memory for the
rest of the run and the dollars that the next run will pay again are counted (`Unkept`).
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import lmdb
import orjson

from ..core.errors import CacheError
from .inflight import InFlight

logger = logging.getLogger(__name__)
DEFAULT_MAP_SIZE = 256 * 2**20  # virtual reservation, the file grows only as it fills
# what LMDB raises for pages that are not what its tree says they are
DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.VersionMismatchError,
          lmdb.BadValsizeError, lmdb.PageFullError)


def damaged(path: Path, detail: str) -> CacheError:
    data = path / "data.mdb"
    return CacheError(f"the response cache {data} is damaged ({detail}). Move it aside to start an empty cache "
                      f"(its answers will be paid again): mv {path} {path}.damaged")


@dataclass
class Unkept:
    """Answers paid for that the disk refused: kept in memory for this run, paid again by the next one."""

    answers: int = 0
    dollars: float = 0.0
    reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, dollars: float, reason: str) -> None:
        with self._lock:
            self.answers += 1
            self.dollars += dollars
            first, self.reason = not self.reason, reason
        if first:
            logger.warning("%s: answers are kept in memory for the rest of this run; the next run pays for them "
                           "again (this run's total is in its summary)", reason)

    def line(self) -> str:
        return (f"{self.answers} answers (${self.dollars:.6f}) paid but not kept in the cache ({self.reason}): the "
                "next run pays for them again") if self.answers else ""


class ResponseCache:
    """Key (bytes) -> response (JSON-able dict), durable and shared between processes."""

    def __init__(self, path: str | os.PathLike, map_size: int = DEFAULT_MAP_SIZE):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(str(self.path), map_size=map_size, subdir=True, sync=True, metasync=True,
                                  readahead=False, max_dbs=0, max_readers=512)
        except DAMAGE as exc:
            raise damaged(self.path, str(exc)) from None
        except (OSError, lmdb.Error) as exc:
            raise CacheError(f"cannot open the response cache at {self.path}: {exc}") from None
        self._check_length()
        self._inode = self._data_inode()
        self._write_lock = threading.Lock()
        self._memory: dict[bytes, dict] = {}  # answers the disk refused, for the rest of this run
        self.inflight = InFlight(self.path / "inflight")  # requests being paid for by some process right now

    def _data_inode(self) -> int | None:
        try:
            return os.stat(self.path / "data.mdb").st_ino
        except OSError:
            return None

    def _check_length(self) -> None:
        """LMDB maps the file and trusts its meta page: pages past the end of a cut file are a SIGBUS."""
        needed = (self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"]
        size = (self.path / "data.mdb").stat().st_size
        if size < needed:
            self._env.close()
            raise damaged(self.path, f"{size} bytes where LMDB's own record needs {needed}: cut short by a full "
                                     "disk or an interrupted copy")

    def get(self, key: bytes) -> dict | None:
        """The cached response, or None on a miss or an entry that cannot be decoded."""
        try:
            with self._env.begin() as txn:
                raw = txn.get(key)
        except lmdb.MapResizedError:  # another process grew the map: adopt its size and retry
            self._env.set_mapsize(0)
            return self.get(key)
        except DAMAGE as exc:
            raise damaged(self.path, str(exc)) from None
        if raw is None:
            return self._memory.get(key) if self._memory else None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: bytes, value: dict) -> str | None:
        """Commit `value` durably (growing the map when it is full): None. When the disk refuses it, `value`
        is kept in memory for the rest of this process's run and the reason is returned."""
        blob = orjson.dumps(value)
        with self._write_lock:
            if self._data_inode() != self._inode:
                return self._keep(key, value, f"the cache folder {self.path} was deleted or replaced during the run")
            for _ in range(32):
                try:
                    with self._env.begin(write=True) as txn:
                        txn.put(key, blob)
                    return None
                except lmdb.MapFullError:
                    self._env.set_mapsize(self._env.info()["map_size"] * 2)
                except lmdb.MapResizedError:
                    self._env.set_mapsize(0)
                except DAMAGE as exc:
                    raise damaged(self.path, str(exc)) from None
                except lmdb.Error as exc:  # a full disk, an I/O error
                    return self._keep(key, value, f"the disk refused a write to the cache {self.path}: {exc}")
        return self._keep(key, value, f"the cache {self.path} could not grow to fit a {len(blob)}-byte entry")

    def _keep(self, key: bytes, value: dict, reason: str) -> str:
        self._memory[key] = value
        return reason

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
        self.unkept = Unkept()  # answers paid for under this root that the disk refused

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
