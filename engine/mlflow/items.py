"""Per-item results as an MLflow table: one row per data point with what the prompt was given, what the model
answered (each of the n choices), what the task expected, eval_func's metrics, the point's cost and whether it
failed, so that a team can filter a run's table (Artifacts tab, `items/*.json`) down to the failures.

The rows come from what the tune and the test already hold (a complete trial keeps its per-point results; the
test keeps each point's answers and cost): nothing is asked of a model again to build them."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..core.numbers import plain
from ..core.templates import config_fields

OWN = ("point", "answer", "answers", "cost_usd", "failed")  # columns the table names itself
# the fields of a point that hold what the task expects (the rest of a point not in the prompt: `data_<field>`)
EXPECTED = ("answer", "answers", "expected", "expected_answer", "target", "label", "solution",
            "canonical_solution", "reference", "ground_truth", "gold", "output", "test", "tests")


def _cell(value: Any) -> Any:
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def item_table(points: Sequence[Mapping], config: Mapping, rows: Sequence[Mapping], metric: str,
               mode: str) -> dict[str, list]:
    """Columns of the per-item table, in this order: `point` (its index), the prompt's fields by name, `answer`
    (or `answers`, a list, when n > 1), the point's expected answer as `expected_<field>` (`answer`, `target`,
    `label`, `solution`, ...), eval_func's metrics, `cost_usd`, `failed` when the tuned metric is pass/fail,
    then the point's other fields as `data_<field>`. `rows[i]` holds point i's `answers`, `metrics` and
    `cost_usd`; points past the last row (a test stopped by its budget) are left out."""
    inputs = set(config_fields(dict(config)))
    rows = list(rows)[:len(points)]
    points = points[:len(rows)]
    metrics = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    single = all(len(r["answers"]) == 1 for r in rows)
    fields = list(dict.fromkeys(k for p in points for k in p))
    table: dict[str, list] = {"point": list(range(len(rows)))}

    def put(name: str, key: str) -> None:
        table[name if name not in table and name not in metrics else f"input_{key}"] = [_cell(p.get(key))
                                                                                        for p in points]

    for key in (k for k in fields if k in inputs):
        put(key if key not in OWN else f"input_{key}", key)
    table["answer" if single else "answers"] = [r["answers"][0] if single else list(r["answers"]) for r in rows]
    for key in (k for k in fields if k not in inputs and k.lower() in EXPECTED):
        put(f"expected_{key}", key)
    for key in metrics:
        table[key if key not in table else f"metric_{key}"] = [_cell(r["metrics"].get(key)) for r in rows]
    table["cost_usd"] = [_cell(r["cost_usd"]) for r in rows]
    scores = [_cell(r["metrics"].get(metric)) for r in rows]
    numbers = [float(s) for s in scores if isinstance(s, (bool, int, float)) and s is not None]
    if numbers and len(numbers) == len(scores) and all(s in (0.0, 1.0) for s in numbers):
        worst = 0.0 if mode == "max" else 1.0
        table["failed"] = [float(s) == worst for s in scores]
    for key in (k for k in fields if k not in inputs and k.lower() not in EXPECTED):
        put(f"data_{key}", key)
    return table


def trial_rows(details: Sequence[Mapping]) -> list[dict]:
    """A complete trial's `details` as table rows."""
    return [{"answers": d["answers"], "metrics": d["metrics"], "cost_usd": d["cost_usd"]} for d in details]


def tested_rows(tested) -> list[dict]:
    """A test run's (engine.evaluate.testing.TestRun) per-point results as table rows."""
    return [{"answers": answers, "metrics": metrics, "cost_usd": cost}
            for answers, metrics, cost in zip(tested.responses, tested.per_instance, tested.costs)]
