"""Tune wall time against a loopback server that adds 200 ms per request: concurrency 8 vs 1, and trials per
minute on this machine's event loop (parallel=local) vs on 2 Ray workers (parallel=ray)."""
from __future__ import annotations

import tempfile
import time

from engine.session import Session
from engine.tuning import Tuner, TuneSpec
from engine.tuning.spec import RaySettings

from .common import fake_server_process, register_fake_model

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(8) for b in range(6)]  # 48 points
PROMPTS = ["{question}", "Think step by step. {question}"]


def eval_func(responses, **point):
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


def tune_once(base_url: str, concurrency: int, budget: float, num_samples: int, trials: int | None = None,
              ray: RaySettings | None = None, space: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Session(cache_path=tmp) as session:  # a fresh cache per run
        model = register_fake_model(session.catalog, base_url)
        spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=budget, num_samples=num_samples,
                        concurrency=concurrency, progress=False, trials=trials, ray=ray,
                        space={"model": model, "prompt": PROMPTS, "max_tokens": 16, "n": 1, **(space or {})})
        tuner = Tuner(spec, session.requester, 41)
        start = time.perf_counter()
        best, _ = tuner.run()
        return {"wall_s": time.perf_counter() - start, "best": best, "paid": tuner.guard.paid,
                "trials": len(tuner.trials), "budget": budget}


def concurrency_speedup(budget: float = 0.02, num_samples: int = 4, latency: float = 0.2) -> dict:
    with fake_server_process(latency=latency, landscape=True) as base_url:
        runs = {c: tune_once(base_url, c, budget, num_samples) for c in (8, 1)}
    return {"runs": runs, "speedup": runs[1]["wall_s"] / runs[8]["wall_s"], "latency": latency}


def ray_vs_local(workers: int = 2, num_samples: int = 12, latency: float = 0.2) -> dict:
    """Trials per minute: the default local path vs `workers` Ray workers (Ray's start-up timed apart)."""
    from engine.tuning.ray_trials import _connect, warm_up

    from flaml.tune import lograndint, uniform

    space = {"max_tokens": lograndint(8, 32), "temperature": uniform(0, 1)}
    settings = RaySettings(workers=workers, share_cache=False)
    start = time.perf_counter()
    ray = _connect(settings)
    warm_up(ray, workers)
    startup = time.perf_counter() - start
    try:
        with fake_server_process(latency=latency, landscape=True) as base_url:
            runs = {"local": tune_once(base_url, 8, 1.0, num_samples, space=space),
                    f"local, {workers} trials": tune_once(base_url, 8, 1.0, num_samples, trials=workers, space=space),
                    f"ray, {workers} workers": tune_once(base_url, 8, 1.0, num_samples, ray=settings, space=space)}
    finally:
        ray.shutdown()
    for r in runs.values():
        r["trials_per_min"] = r["trials"] / r["wall_s"] * 60
    local, same_width, remote = runs.values()
    return {"runs": runs, "ratio": remote["trials_per_min"] / local["trials_per_min"],
            "ratio_same_width": remote["trials_per_min"] / same_width["trials_per_min"], "ray_startup_s": startup,
            "latency": latency}
