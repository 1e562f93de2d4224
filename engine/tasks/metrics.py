"""Built-in answer metrics (one call per completion) and the eval_func they make for a task."""
from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable

from .registry import Registry

# metric(response_text, answer, **options) -> bool
METRICS: Registry[Callable[..., bool]] = Registry("metric")

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().strip(".").lower()


def to_number(text: str) -> Fraction | None:
    """'1,234', '-3.5', '3/4', '$12' -> an exact number; None when it is not one."""
    text = str(text).strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def last_number(text: str) -> Fraction | None:
    found = _NUMBER.findall(text)
    return to_number(found[-1]) if found else None


@METRICS.register("exact_match")
def exact_match(response: str, answer, **_) -> bool:
    return normalize(response) == normalize(answer)


@METRICS.register("contains")
def contains(response: str, answer, **_) -> bool:
    return normalize(answer) in normalize(response)


@METRICS.register("numeric_match")
def numeric_match(response: str, answer, **_) -> bool:
    """The last number in the response equals the answer (so '2 + 3 = 5' and 'The answer is 5.' count)."""
    got, want = last_number(response), to_number(answer)
    return got is not None and want is not None and got == want


@METRICS.register("regex")
def regex(response: str, answer, pattern: str | None = None, **_) -> bool:
    """`pattern` finds the answer in the response (group 1, or the whole match)."""
    if not pattern:
        return False
    m = re.search(pattern, response)
    if not m:
        return False
    return normalize(m.group(1) if m.groups() else m.group(0)) == normalize(answer)


def success_eval_func(metric: Callable[..., bool], answer_field: str = "answer", **options) -> Callable:
    """eval_func(responses, **point) -> {"success": any right, "success_rate": share right}."""
    def eval_func(responses, **point):
        answer = point[answer_field]
        ok = [bool(metric(r, answer, **options)) for r in responses] or [False]
        return {"success": any(ok), "success_rate": sum(ok) / len(ok)}
    eval_func.__qualname__ = f"success[{getattr(metric, '__name__', metric)}]"
    return eval_func
