"""A hard cap on dollars: reserve a request's worst-case cost before sending, settle the real cost after.

Reservations make the cap hold under concurrency: the sum of settled costs plus outstanding reservations
never exceeds the limit, and a real cost can never exceed its reservation, so the spend never does either.
"""
from __future__ import annotations

import logging
import threading

from .errors import BudgetError
from .models import ModelSpec

logger = logging.getLogger(__name__)


class BudgetExhausted(BudgetError):
    """The next request's worst case does not fit in what is left: stop cleanly."""


def worst_case_cost(spec: ModelSpec, payload: dict) -> float:
    """An upper bound on what `payload` can cost: prompt tokens <= UTF-8 bytes (+ template overhead),
    completion tokens <= max_tokens * n (or the context length when max_tokens is not set)."""
    if "messages" in payload:
        text_bytes = sum(len(str(m.get("content") or "").encode()) for m in payload["messages"])
        overhead = spec.prompt_overhead_tokens + 8 * len(payload["messages"])
    else:
        text_bytes = len(str(payload.get("prompt", "")).encode())
        overhead = spec.prompt_overhead_tokens
    n = payload.get("n") or 1
    max_tokens = payload.get("max_tokens") or spec.context_length
    return (text_bytes + overhead) * spec.prompt_price + max_tokens * n * spec.completion_price


class BudgetGuard:
    """Money for one run. `limit=None` tracks spending without a cap.

    `paid` is what was really spent now; `charged` adds the list price of the cached responses the run
    used. The cap applies to `charged` (so `paid` <= `charged` <= limit): a rerun served from the cache
    then makes the same decisions as the first run, and stops at the same point, for $0.
    """

    def __init__(self, limit: float | None = None):
        if limit is not None and limit <= 0:
            raise BudgetError(f"a budget must be > 0 dollars, got {limit}")
        self.limit = limit
        self.paid = 0.0
        self.charged = 0.0
        self.reserved = 0.0
        self.refused = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> float:
        return float("inf") if self.limit is None else self.limit - self.charged - self.reserved

    @property
    def saved(self) -> float:
        """What the cache saved this run: list price of the responses it served."""
        return self.charged - self.paid

    @property
    def exhausted(self) -> bool:
        return self.refused > 0

    def reserve(self, amount: float) -> None:
        with self._lock:
            if self.limit is not None and self.charged + self.reserved + amount > self.limit:
                self.refused += 1
                raise BudgetExhausted(
                    f"optimization budget reached: ${self.charged:.6f} used of ${self.limit:.6f}, "
                    f"the next request could cost up to ${amount:.6f}")
            self.reserved += amount

    def settle(self, reserved: float, actual: float) -> None:
        with self._lock:
            self.reserved -= reserved
            self.paid += actual
            self.charged += actual

    def charge_cached(self, amount: float) -> None:
        with self._lock:
            self.charged += amount

    def release(self, reserved: float) -> None:
        self.settle(reserved, 0.0)

    def guard(self, catalog, send):
        """Wrap an async `send(request, payload)` so every call is reserved, then settled."""
        async def guarded(request, payload):
            spec = catalog.get(request.model)
            reservation = worst_case_cost(spec, payload)
            self.reserve(reservation)
            try:
                response = await send(request, payload)
            except BaseException:
                self.release(reservation)
                raise
            actual = catalog.cost(request.model, response.get("usage"))
            self.settle(reservation, actual)
            if actual > reservation:  # the bound was wrong: say so loudly, but keep what was paid for
                logger.warning("a %s response cost $%.6f, above its worst-case bound $%.6f: raise "
                               "prompt_overhead_tokens in its model config", request.model, actual, reservation)
            return response
        return guarded
