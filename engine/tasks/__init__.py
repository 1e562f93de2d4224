"""Tasks: data (loader and splits), eval_func, metric and default prompts, registered by name.

A task pack is a module in `experiments/` whose factory registers itself with `@TASKS.register(name)`;
`generic` builds a task from config alone (a JSONL/CSV file and a built-in metric).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..models import conf_dir
from ..registry import Registry
from .metrics import METRICS, success_eval_func


@dataclass
class Task:
    name: str
    points: list[dict]  # all data points; splits are cut from them deterministically
    eval_func: Callable
    prompts: list = field(default_factory=list)  # templates (str) to choose among
    stops: list | None = None  # stop lists to choose among
    # how long an answer may be: a search domain in the config form (`search.max_tokens` overrides it)
    max_tokens: Any = ("lograndint", 8, 64)
    metric: str = "success"
    mode: str = "max"
    description: str = ""
    test_fraction: float = 0.5
    splits: dict[str, list[dict]] | None = None  # explicit splits, when the data comes with them

    def split(self, name: str, size: int | None = None) -> list[dict]:
        """'tune' or 'test': explicit splits if given, else every k-th point goes to test."""
        if self.splits is not None:
            if name not in self.splits:
                raise ConfigError(f"task {self.name!r} has splits {sorted(self.splits)}, not {name!r}")
            points = self.splits[name]
        else:
            stride = max(2, round(1 / self.test_fraction))
            test = [p for i, p in enumerate(self.points) if i % stride == stride - 1]
            tune = [p for i, p in enumerate(self.points) if i % stride != stride - 1]
            points = {"tune": tune, "test": test}.get(name)
            if points is None:
                raise ConfigError(f"task {self.name!r} has splits ['test', 'tune'], not {name!r}")
        return points[:size] if size else points


# A task factory takes the task config and returns a Task.
TASKS: Registry[Callable[[Any], Task]] = Registry("task")


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
    from . import generic  # noqa: F401  (registers "generic")

    discover()
    task = TASKS.get(cfg.name)(cfg)
    if not task.points and not task.splits:
        raise ConfigError(f"task {cfg.name!r} has no data")
    return task


__all__ = ["METRICS", "TASKS", "Task", "discover", "load_task", "success_eval_func"]
