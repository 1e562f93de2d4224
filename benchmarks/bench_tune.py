"""Tune wall time with concurrency 8 vs 1 against a loopback server that adds 200 ms per request."""
from __future__ import annotations

import tempfile
import time

from engine.session import Session
from engine.tuning import Tuner, TuneSpec

from .common import fake_server_process, register_fake_model

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(8) for b in range(6)]  # 48 points
PROMPTS = ["{question}", "Think step by step. {question}"]


def eval_func(responses, **point):
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


def tune_once(base_url: str, concurrency: int, budget: float, num_samples: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Session(cache_path=tmp) as session:  # a fresh cache per run
        model = register_fake_model(session.catalog, base_url)
        spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=budget, num_samples=num_samples,
                        concurrency=concurrency, progress=False,
                        space={"model": model, "prompt": PROMPTS, "max_tokens": 16, "n": 1})
        tuner = Tuner(spec, session.requester, 41)
        start = time.perf_counter()
        best, _ = tuner.run()
        return {"wall_s": time.perf_counter() - start, "best": best, "paid": tuner.guard.paid,
                "trials": len(tuner.trials), "budget": budget}


def concurrency_speedup(budget: float = 0.02, num_samples: int = 4, latency: float = 0.2) -> dict:
    with fake_server_process(latency=latency, landscape=True) as base_url:
        runs = {c: tune_once(base_url, c, budget, num_samples) for c in (8, 1)}
    return {"runs": runs, "speedup": runs[1]["wall_s"] / runs[8]["wall_s"], "latency": latency}
