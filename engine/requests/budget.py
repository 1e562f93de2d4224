"""A hard cap on dollars: reserve each request's worst-case cost before sending, settle the real cost after.

Reservations make the cap hold under concurrency: settled costs, outstanding reservations and the worst case
of every attempt that may have been billed without an answer (a timeout: the server may still finish and
bill it) never exceed the limit together, and a real cost never exceeds its reservation, so the spend,
even as the provider counts it, never does either. A response that does exceed its reservation means the
bound was wrong: the run ends with an error saying by how much, instead of a warning.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from ..core.errors import BudgetError
from ..core.models import ModelSpec

PROMPT_SIDE_FIELDS = ("tools", "functions", "response_format", "tool_choice", "logit_bias", "suffix")


@dataclass(frozen=True)
class TokenBound:
    """The most tokens a request can be billed for."""

    prompt: int  # UTF-8 bytes of everything sent as prompt, plus the model's template overhead
    completion: int  # (max_tokens + the model's per-choice margin) per choice, best_of included

    def cost(self, spec: ModelSpec) -> float:
        return self.prompt * spec.prompt_price + self.completion * spec.completion_price


def worst_case_tokens(spec: ModelSpec, payload: dict) -> TokenBound:
    """Prompt tokens <= UTF-8 bytes (+ template overhead); completion tokens <= (max_tokens + margin) per
    choice, the context length when max_tokens is not set. The margin is what a server can return beyond
    max_tokens (llama.cpp finishes a multi-byte character: 9 or 10 tokens for max_tokens=8 on CJK or emoji)."""
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
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    per_choice = max_tokens + spec.completion_margin_tokens if max_tokens else spec.context_length
    return TokenBound(text_bytes + overhead, per_choice * samples)


def worst_case_cost(spec: ModelSpec, payload: dict) -> float:
    return worst_case_tokens(spec, payload).cost(spec)


class BudgetGuard:
    """Money for one run. `limit=None` tracks spending without a cap.

    `paid` is what was really spent now; `charged` adds the list price of the cached responses the run
    used; `unanswered` is the worst case of attempts that may have been billed but brought no answer.
    Work is admitted in data order while charged + unanswered + the worst case of everything admitted and
    not yet settled fits in the limit. Cached responses are admitted at their worst case too, so a rerun
    served from the cache makes exactly the same decisions as the first run, stops at the same point,
    and pays $0; and since a real cost never exceeds its worst case, `paid <= charged <= limit`.
    """

    def __init__(self, limit: float | None = None):
        if limit is not None and not limit >= 0:  # 0 is a trial's allowance on a free model; NaN is refused
            raise BudgetError(f"a budget must be >= 0 dollars, got {limit}")
        self.limit = limit
        self.paid = 0.0
        self.charged = 0.0
        self.reserved = 0.0
        self.unanswered = 0.0
        self.unanswered_requests = 0
        self._lock = threading.Lock()

    @property
    def saved(self) -> float:
        """What the cache saved this run: list price of the responses it served."""
        return self.charged - self.paid

    def _fits(self, amount: float) -> bool:
        return self.limit is None or self.charged + self.unanswered + self.reserved + amount <= self.limit

    def admit(self, worst_cases: list[float]) -> int:
        """Reserve the longest prefix of `worst_cases` that fits; returns how many were admitted."""
        with self._lock:
            admitted = 0
            for amount in worst_cases:
                if not self._fits(amount):
                    break
                self.reserved += amount
                admitted += 1
            return admitted

    def unanswered_attempt(self, amount: float) -> bool:
        """An attempt that may have been billed brought no answer: its worst case stays counted for good.
        True when one more attempt of the same request still fits (the request's own reservation covers it)."""
        with self._lock:
            self.unanswered += amount
            self.unanswered_requests += 1
            return self._fits(0.0)

    def settle(self, reserved: float, charged: float, paid: float) -> None:
        """Replace a reservation by what the work cost at list price (`charged`) and really `paid`."""
        with self._lock:
            self.reserved -= reserved
            self.charged += charged
            self.paid += paid

    def close_allowance(self, reserved: float, allowance: "BudgetGuard") -> None:
        """Replace a reservation made for a sub-budget (one trial's) by what was spent under it."""
        with self._lock:
            self.reserved -= reserved
        self.add_spent(allowance.charged, allowance.paid, allowance.unanswered, allowance.unanswered_requests)

    def add_spent(self, charged: float, paid: float, unanswered: float = 0.0, unanswered_requests: int = 0) -> None:
        """Count money spent elsewhere under this guard's cap (a trial evaluated on a Ray worker)."""
        with self._lock:
            self.charged += charged
            self.paid += paid
            self.unanswered += unanswered
            self.unanswered_requests += unanswered_requests

    def release(self, reserved: float) -> None:
        self.settle(reserved, 0.0, 0.0)
