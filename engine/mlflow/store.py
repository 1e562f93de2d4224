"""The MLflow tracking store: a URI checked before use, and a local SQLite store created atomically.

MLflow creates a SQLite store by running its schema migrations in place; a Ctrl-C in the middle leaves a
half-migrated file that every later run rejects ("out-of-date database schema") and that `mlflow db upgrade`
cannot fix. Here the store is built in a temporary file next to it and moved into place when complete, so
the file is either absent or whole. A store broken that way by an earlier version is moved aside (kept, not
deleted) and a fresh one made, with a line saying where the old one went.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from pathlib import Path

from ..core.config import check_uri
from ..core.errors import ConfigError

logger = logging.getLogger(__name__)
def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///")
    return Path(path if path.startswith("/") or uri.startswith("sqlite:////") else path)


def ensure_store(uri: str) -> None:
    """Make sure a local SQLite store exists and is whole before anything is logged to it. Processes that
    start together in a fresh folder take turns (a lock file beside the store): the first makes it, the
    others find it made, instead of each moving its own over the one the others already use."""
    path = sqlite_path(check_uri(uri))
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(f".{path.name}.lock")):
        _ensure_locked(path)


@contextlib.contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, and by the kernel if we die
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_locked(path: Path) -> None:
    if path.exists():
        if _usable(f"sqlite:///{path.resolve()}"):
            return
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        logger.warning("the tracking store %s could not be opened (left half-created by an interrupted run?); it "
                       "was moved to %s and a new one is made", path, aside)
    # a name never used before: MLflow keeps one engine per URI, and an earlier one's file was moved away
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    for stale in path.parent.glob(f".{path.name}.creating-*"):  # left by a run interrupted while creating
        stale.unlink(missing_ok=True)
    try:
        if not _usable(f"sqlite:///{tmp.resolve()}"):
            raise ConfigError(f"tracking.uri: MLflow could not create a store at {tmp}")
        os.link(tmp, path)  # never over a store that appeared meanwhile (a process that takes no lock)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _usable(uri: str) -> bool:
    """Open (creating and migrating if needed) the store at `uri`, read from it, close it. The store class
    is used directly and its engine dropped after: MLflow keeps one store and one engine per URI for the life
    of the process, and a broken one kept there would outlive its repair."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = None
    try:
        store = SqlAlchemyStore(uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
        store.search_experiments(max_results=1)
        return True
    except Exception:  # noqa: BLE001 - MLflow and SQLAlchemy raise many kinds for a store they cannot use
        return False
    finally:
        if store is not None:
            store.engine.dispose()
        getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
