"""A task (data, eval_func, metric, prompts, max_tokens range) and the registry task factories join."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.errors import ConfigError
from .registry import Registry


@dataclass
class Task:
    name: str
    points: list[dict]  # all data points; splits are cut from them deterministically
    eval_func: Callable
    prompts: list = field(default_factory=list)  # templates (str) to choose among
    stops: list | None = None  # stop lists to choose among
    # how long an answer may be: a search domain in the config form (`search.max_tokens` overrides it);
    # None: the schema's DEFAULT_MAX_TOKENS
    max_tokens: Any = None
    metric: str = "success"
    mode: str = "max"
    description: str = ""  # one line, shown as the MLflow run's `task_description` tag
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
