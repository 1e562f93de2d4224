"""A hard cap on dollars: reserve each request's worst-case cost before sending, settle the real cost after.

Reservations make the cap hold under concurrency: settled costs plus outstanding reservations never
exceed the limit, and a real cost never exceeds its reservation, so the spend never does either.
"""
from __future__ import annotations

import json
import logging
import threading

from .errors import BudgetError
from .models import ModelSpec

logger = logging.getLogger(__name__)
PROMPT_SIDE_FIELDS = ("tools", "functions", "response_format", "tool_choice", "logit_bias", "suffix")


def worst_case_cost(spec: ModelSpec, payload: dict) -> float:
    """An upper bound on what `payload` can cost: prompt tokens <= UTF-8 bytes (+ template overhead),
    completion tokens <= max_tokens * n (or the context length when max_tokens is not set)."""
    if "messages" in payload:
        text_bytes = sum(len(str(m.get("content") or "").encode()) for m in payload["messages"])
        overhead = spec.prompt_overhead_tokens + 8 * len(payload["messages"])
    else:
        text_bytes = len(str(payload.get("prompt", "")).encode())
        overhead = spec.prompt_overhead_tokens
    for extra in PROMPT_SIDE_FIELDS:  # tool and format definitions are prompt tokens too
        if payload.get(extra) is not None:
            text_bytes += len(json.dumps(payload[extra], default=str).encode())
    samples = max(payload.get("n") or 1, payload.get("best_of") or 1)  # best_of is billed in full
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens") or spec.context_length
    return (text_bytes + overhead) * spec.prompt_price + max_tokens * samples * spec.completion_price


class BudgetGuard:
    """Money for one run. `limit=None` tracks spending without a cap.

    `paid` is what was really spent now; `charged` adds the list price of the cached responses the run
    used. Work is admitted in data order while `charged` plus the worst case of everything admitted and
    not yet settled fits in the limit. Cached responses are admitted at their worst case too, so a rerun
    served from the cache makes exactly the same decisions as the first run, stops at the same point,
    and pays $0; and since a real cost never exceeds its worst case, `paid <= charged <= limit`.
    """

    def __init__(self, limit: float | None = None):
        if limit is not None and limit <= 0:
            raise BudgetError(f"a budget must be > 0 dollars, got {limit}")
        self.limit = limit
        self.paid = 0.0
        self.charged = 0.0
        self.reserved = 0.0
        self._lock = threading.Lock()

    @property
    def saved(self) -> float:
        """What the cache saved this run: list price of the responses it served."""
        return self.charged - self.paid

    def admit(self, worst_cases: list[float]) -> int:
        """Reserve the longest prefix of `worst_cases` that fits; returns how many were admitted."""
        with self._lock:
            admitted = 0
            for amount in worst_cases:
                if self.limit is not None and self.charged + self.reserved + amount > self.limit:
                    break
                self.reserved += amount
                admitted += 1
            return admitted

    def settle(self, reserved: float, charged: float, paid: float) -> None:
        """Replace a reservation by what the work cost at list price (`charged`) and really `paid`."""
        with self._lock:
            self.reserved -= reserved
            self.charged += charged
            self.paid += paid
        if charged > reserved + 1e-12:  # the bound was wrong: say so loudly, keep what was paid for
            logger.warning("a response cost $%.6f, above its worst-case bound $%.6f: raise "
                           "prompt_overhead_tokens in its model config", charged, reserved)

    def release(self, reserved: float) -> None:
        self.settle(reserved, 0.0, 0.0)
