"""Which process is sending which request right now, for every process that shares one cache folder.

Before paying for a request the cache lacks, a process claims it: a marker in a small LMDB next to the cache
records its pid, host and a lease. A second process about to send the same request finds the marker and
waits for the answer to reach the cache instead of paying again. A marker whose owner died (its pid is gone)
or whose lease ran out is taken over. The markers need no durability (a crash should forget them), so this
environment does not sync to disk.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import lmdb
import orjson

from ..core.errors import CacheError

HOST = socket.gethostname()
LEASE_S = 600.0  # the longest a request can take with its retries, and then some


def _owner_alive(marker: dict) -> bool:
    if marker.get("expires", 0) < time.time():
        return False
    if marker.get("host") != HOST:
        return True  # another machine's process: trust its lease
    try:
        os.kill(int(marker["pid"]), 0)
        return True
    except (OSError, KeyError, ValueError):
        return False


def _marker(txn, key: bytes) -> dict | None:
    """The marker of `key`, None when there is none; an unreadable one reads as owned by nobody alive."""
    raw = txn.get(key)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}


def _mine(marker: dict) -> bool:
    return marker.get("pid") == os.getpid() and marker.get("host") == HOST


class InFlight:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(str(self.path), map_size=64 * 2**20, subdir=True, sync=False, metasync=False,
                                  readahead=False, max_readers=512)
        except (OSError, lmdb.Error) as exc:
            raise CacheError(f"cannot open the in-flight registry at {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def claim(self, key: bytes, lease_s: float = LEASE_S) -> dict | None:
        """Take the marker of `key`: None when this process now owns it, else the live owner's marker."""
        mine = {"pid": os.getpid(), "host": HOST, "expires": time.time() + lease_s}
        try:
            with self._lock, self._env.begin(write=True) as txn:
                marker = _marker(txn, key)
                if marker is not None and not _mine(marker) and _owner_alive(marker):
                    return marker
                txn.put(key, orjson.dumps(mine))
        except lmdb.Error:  # a full disk: go on without telling other processes (at worst one pays twice)
            return None
        return None

    def release(self, key: bytes) -> None:
        """Drop this process's marker of `key` (the answer is cached, or the request failed)."""
        try:
            with self._lock, self._env.begin(write=True) as txn:
                marker = _marker(txn, key)
                if marker is not None and _mine(marker):
                    txn.delete(key)
        except lmdb.Error:  # a full disk: the marker's lease runs out, or its owner's death frees it
            pass

    def close(self) -> None:
        self._env.close()
