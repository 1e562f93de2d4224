"""Tracking overhead: the same tune (60 trials over 200 points, a loopback server answering at once) with MLflow
tracking on a local SQLite store (parent run, a child run per trial, the per-item tables, the plot) vs off.
The ratio of wall times is what `tracking=local` adds; the target is at most 1.10."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from engine.session import Session
from engine.tuning import Tuner, TuneSpec

from .common import fake_server_process, register_fake_model

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(20) for b in range(10)]  # 200 points
PROMPTS = ["{question}", "Think step by step. {question}"]


def eval_func(responses, **point):
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok)}


def tune_once(base_url: str, tracked: bool, trials: int, data: list[dict]) -> dict:
    from flaml.tune import lograndint, uniform

    with tempfile.TemporaryDirectory() as tmp, Session(cache_path=f"{tmp}/cache") as session:
        model = register_fake_model(session.catalog, base_url)
        tracker = None
        if tracked:
            from engine.mlflow.items import item_table, trial_rows
            from engine.mlflow.tracking import Tracker

            tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "bench", Path(tmp, "artifacts").as_uri())  # store made
        spec = TuneSpec(data, "success", "max", eval_func, optimization_budget=100.0, num_samples=trials,
                        progress=False, log_file_name=f"{tmp}/trials.jsonl",
                        space={"model": model, "prompt": PROMPTS, "max_tokens": lograndint(8, 64),
                               "temperature": uniform(0, 1), "n": 1})
        start = time.perf_counter()
        if tracker:
            tracker.start({"trials": trials}, {"task": "bench"}, {"tune": data}, name="bench", space=spec.space)
        tuner = Tuner(spec, session.requester, 41, on_trial=tracker.log_trial if tracker else None)
        best, _ = tuner.run()
        if tracker:
            items = {"items/best_trial.json": item_table(data, best, trial_rows(tuner.best.details), "success", "max")}
            tracker.finish(best, {"tune_success": tuner.best_metric}, tuner.trials, "success", "max",
                           best_trial=tuner.best, items=items)
        return {"wall_s": time.perf_counter() - start, "trials": len(tuner.trials)}


def tracking_overhead(trials: int = 60, points: int = 200, rounds: int = 2) -> dict:
    """Wall time of tracked and untracked tunes, alternating (`rounds` each, the fastest of each kept)."""
    data = DATA[:points]
    with fake_server_process(latency=0.0, landscape=True) as base_url:
        runs = {"off": [], "local": []}
        for _ in range(rounds):
            for name in ("off", "local"):
                runs[name].append(tune_once(base_url, name == "local", trials, data))
    best = {name: min(r, key=lambda x: x["wall_s"]) for name, r in runs.items()}
    return {"runs": best, "ratio": best["local"]["wall_s"] / best["off"]["wall_s"], "points": len(data),
            "trials": trials}


if __name__ == "__main__":
    result = tracking_overhead()
    print(result)
