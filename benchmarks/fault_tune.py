"""One tune against the loopback server; `make bench-faults` runs it in this process, or as processes of its
own that it kills, races and reruns.

Usage: python -m benchmarks.fault_tune BASE_URL CACHE_DIR [REQUEST_TIMEOUT]; prints one JSON line.
"""
from __future__ import annotations

import json
import sys

from flaml.tune import randint

from engine import Session
from engine.tuning import Tuner, TuneSpec

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(1, 7) for b in range(1, 5)]  # 24
PROMPTS = ["{question}", "Think step by step. {question}"]
PRICE = {"prompt": 0.001, "completion": 0.002}
BUDGET = 0.02


def eval_func(responses, **point):
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


def tune(base_url: str, cache: str, timeout: float = 30.0, budget: float = BUDGET) -> dict:
    """The tune's best config and what the engine says it paid (and may have been billed unanswered)."""
    with Session(cache_path=cache, seed=41) as session:
        session.catalog.add({"name": "faulty", "provider": "compatible", "chat": True, "base_url": base_url,
                             "price_per_1k": PRICE})
        session.set_requests(timeout=timeout, retry_wait_time=0.05, max_retry_period=60)
        spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=budget, num_samples=-1,
                        concurrency=8, progress=False,
                        space={"model": "faulty", "prompt": PROMPTS, "max_tokens": randint(4, 30), "n": 1})
        tuner = Tuner(spec, session.requester, session.seed)
        best, _ = tuner.run()
        return {"best": best, "paid": tuner.guard.paid, "unanswered": tuner.guard.unanswered,
                "unanswered_requests": tuner.guard.unanswered_requests, "trials": len(tuner.trials)}


if __name__ == "__main__":
    print(json.dumps(tune(sys.argv[1], sys.argv[2], *(float(a) for a in sys.argv[3:4]))), flush=True)
