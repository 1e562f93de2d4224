"""Tasks: data (loader and splits), eval_func, metric and default prompts, registered by name.

A task pack is a module in `experiments/` whose factory registers itself with `@TASKS.register(name)`;
`generic` builds a task from config alone (a JSONL/CSV file and a built-in metric).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ..core.config import GENERIC_TASK_KEYS
from ..core.errors import ConfigError
from ..core.models import conf_dir
from . import generic  # noqa: F401  (registers "generic")
from .base import TASKS, Task
from .metrics import METRICS, success_eval_func


def experiments_dir() -> Path:
    env = os.environ.get("ENGINE_EXPERIMENTS_DIR")
    return Path(env) if env else conf_dir().parent / "experiments"


def discover(folder: Path | None = None) -> None:
    """Import every task pack in `experiments/` (and any module dropped there) so that it registers."""
    folder = folder or experiments_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.py")):
        module_name = f"engine_experiments.{path.stem}"
        if module_name in sys.modules or path.stem.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            raise


def load_task(cfg) -> Task:
    """The Task a TaskConfig names (packs in experiments/ are discovered first)."""
    discover()
    factory = TASKS.get(cfg.name)
    if cfg.name != "generic":
        given = [key for key in GENERIC_TASK_KEYS if getattr(cfg, key, None) is not None]
        if given:
            raise ConfigError(f"task.{given[0]}: task {cfg.name!r} is registered in code and declares its own data, "
                              f"prompts and metric; task.{', task.'.join(given)} apply to task=generic only "
                              "(override prompts with search.prompts)")
    task = factory(cfg)
    if not task.points and not task.splits:
        raise ConfigError(f"task {cfg.name!r} has no data")
    return task


__all__ = ["METRICS", "TASKS", "Task", "discover", "load_task", "success_eval_func"]
