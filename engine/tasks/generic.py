"""A task declared in config: a JSONL or CSV file, the field holding the answer, a built-in metric."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..core.errors import ConfigError
from ..core.models import conf_dir
from .base import TASKS, Task
from .metrics import METRICS, success_eval_func


def read_points(path: str) -> list[dict]:
    file = Path(path)
    if not file.is_absolute() and not file.exists():
        file = conf_dir().parent / path  # relative to the project, wherever the command runs
    if not file.exists():
        raise ConfigError(f"task.path: no file at {path}")
    if file.suffix == ".csv":
        with open(file, newline="") as f:
            return list(csv.DictReader(f))
    if file.suffix in (".jsonl", ".json"):
        return [_json_point(line, file, number) for number, line in enumerate(file.read_text().splitlines(), 1)
                if line.strip()]
    raise ConfigError(f"task.path: {path} is neither .jsonl nor .csv")


def _json_point(line: str, file: Path, number: int) -> dict:
    try:
        point = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}:{number}: not a JSON object ({exc.msg} at column {exc.colno})") from None
    if not isinstance(point, dict):
        raise ConfigError(f"{file}:{number}: a data point must be a JSON object, got {type(point).__name__}")
    return point


@TASKS.register("generic")
def generic(cfg) -> Task:
    """A JSONL/CSV file declared in config (task.path, task.answer_field, task.metric, task.prompts)."""
    if not cfg.path:
        raise ConfigError("task.path: a generic task needs a JSONL or CSV file")
    if not cfg.prompts:
        raise ConfigError("task.prompts: a generic task needs at least one prompt template")
    points = read_points(cfg.path)
    answer_field, metric = cfg.answer_field or "answer", cfg.metric or "exact_match"
    missing = [i for i, p in enumerate(points) if p.get(answer_field) in (None, "")]
    if missing:  # a CSV row without a value would be graded against None or ""
        line = missing[0] + 2 if str(cfg.path).endswith(".csv") else None  # the CSV header is line 1
        where = f"{cfg.path}:{line}" if line else f"data point {missing[0]}"
        raise ConfigError(f"task.answer_field: {answer_field!r} has no value in {where} "
                          f"({len(missing)} point(s) lack it)")
    options = {"pattern": cfg.pattern} if cfg.pattern else {}
    return Task(name=Path(cfg.path).stem, points=points, prompts=list(cfg.prompts),
                eval_func=success_eval_func(METRICS.get(metric), answer_field, **options),
                description=f"{cfg.path} scored by {metric}", test_fraction=cfg.test_fraction)
