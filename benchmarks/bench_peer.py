"""`make bench-peer`: this engine's tune against the seed library's own (pyautogen 0.1.14), measured in one run.

A loopback OpenAI-compatible server (tests/support/fake_openai.py in its own process) answers every request after a
fixed 0.5 s, as a hosted API would, with deterministic answers, and counts what it served and billed; it
ignores `n`, as llama.cpp does. Both tuners get the same task, search space, budgets and cache seed, each a
fresh server and a fresh cache. The seed library runs in a venv of its own (`.venv-peer`, made on first use:
it needs openai<1). Printed: wall time, trials, requests and dollars (server-side), best metric, the ratio.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from engine import Completion, Session
from flaml.tune import lograndint, randint

from .common import fake_server_process
from .peer_task import DATA, MODEL, PRICE_PER_1K, PROMPTS, eval_func

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".venv-peer"
PEER = ["pyautogen==0.1.14", "flaml[blendsearch]"]
LATENCY, BUDGET, INFERENCE_BUDGET, CONCURRENCY = 0.5, 0.02, 0.002, 32


def peer_python() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {PEER_VENV} with {' '.join(PEER)} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER], check=True)
    return python


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as r:
        stats = json.loads(r.read())
    stats["dollars"] = (stats["prompt_tokens"] * PRICE_PER_1K["prompt"]
                        + stats["completion_tokens"] * PRICE_PER_1K["completion"]) / 1000
    return stats


def run_peer() -> dict:
    python = peer_python()
    with fake_server_process(latency=LATENCY, landscape=True, ignore_n=True) as base_url, \
            tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # `benchmarks.peer_task` from the peer's venv too
        out = subprocess.run([str(python), "-m", "benchmarks.peer_tune", base_url, cache, str(BUDGET),
                              str(INFERENCE_BUDGET)], capture_output=True, text=True, check=False, env=env,
                             cwd=cache)  # 0.1.14 moves its cache to ./.cache/41 after the first create
        if out.returncode != 0:
            raise SystemExit(f"the seed library's tune failed:\n{out.stderr[-3000:]}")
        return {**json.loads(out.stdout.strip().splitlines()[-1]), **server_stats(base_url)}


def run_engine() -> dict:
    with fake_server_process(latency=LATENCY, landscape=True, ignore_n=True) as base_url, \
            tempfile.TemporaryDirectory() as cache, Session(cache_path=cache, seed=41) as session:
        session.catalog.add({"name": MODEL, "provider": "compatible", "chat": True, "base_url": base_url,
                             "ignores_n": True, "price_per_1k": PRICE_PER_1K})

        def tune():
            start = time.perf_counter()
            best, analysis = Completion.tune(
                DATA, "success", "max", eval_func, inference_budget=INFERENCE_BUDGET, optimization_budget=BUDGET,
                num_samples=-1, logging_level=logging.ERROR, concurrency=CONCURRENCY, model=MODEL, prompt=PROMPTS,
                max_tokens=lograndint(4, 16), n=randint(1, 3))
            return time.perf_counter() - start, best, analysis

        wall, best, analysis = tune()
        first = server_stats(base_url)
        replay_wall, replay_best, _ = tune()
        replay = server_stats(base_url)
        trials = [t for t in analysis.trials if t.last_result]
        return {"wall_s": wall, "trials": len(trials), "best": best, **first,
                "best_metric": analysis.best_result.get("success"),
                "replay_s": replay_wall, "replay_requests": replay["requests"] - first["requests"],
                "replay_same_best": replay_best == best}


def main() -> None:
    print(f"## tune: this engine vs the seed library (pyautogen 0.1.14), loopback server answering after "
          f"{LATENCY * 1000:.0f} ms, budget ${BUDGET:g}, {len(DATA)} points", flush=True)
    peer = run_peer()
    engine = run_engine()
    for name, r in (("pyautogen 0.1.14", peer), ("engine", engine)):
        print(f"  {name:17} {r['wall_s']:8.1f} s, {r['trials']:3d} trials, {r['requests']:4d} requests, "
              f"${r['dollars']:.6f} billed (server-side), best success {r['best_metric']}")
    print(f"  speedup                {peer['wall_s'] / engine['wall_s']:8.1f}x   (engine: concurrency {CONCURRENCY}, "
          f"budget held: {engine['dollars'] <= BUDGET}; rerun {engine['replay_s']:.1f} s, "
          f"{engine['replay_requests']} requests, same best: {engine['replay_same_best']})")


if __name__ == "__main__":
    main()
