"""`make bench-peer`: this engine's tune against the seed library's own (pyautogen 0.1.14), measured in one run.

A loopback OpenAI-compatible server (tests/support/fake_openai.py in its own process) answers every request after a
fixed 0.5 s, as a hosted API would, with deterministic answers, and counts what it served and billed; it
ignores `n`, as llama.cpp does. Both tuners get the same task, search space, budgets and cache seed, each a
fresh server and a fresh cache; the engine runs with its defaults (concurrency auto). The seed library runs in a
venv of its own (`.venv-peer`, made on first use: it needs openai<1). Printed: wall time, trials, requests and
dollars (server-side), best metric, the ratio.

Then a rate-limited server (429 + Retry-After beyond N requests in flight, or beyond R requests per second):
the same `Completion.test` over many points with a few fixed concurrencies, as one would find the best by
hand, and with the default adaptive limit; printed: wall time and the share of requests answered 429.
`python -m benchmarks.bench_peer --engine-only` skips the seed library.
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
LATENCY, BUDGET, INFERENCE_BUDGET = 0.5, 0.02, 0.002
# the rate-limited server: (what it limits, its options), 200 ms per answer, Retry-After 1 s
RATE_LIMITS = [("12 requests in flight", ("--max-in-flight", "12")),
               ("40 requests per second", ("--max-per-second", "40"))]
RATE_LATENCY, RATE_POINTS, RATE_RETRY_AFTER, FIXED = 0.2, 400, "1", (4, 8, 12, 16, 24)
WARM_UP_S = 2.0  # 429s are also counted after this many seconds: the adaptive limit's slow start is over


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
                num_samples=-1, logging_level=logging.ERROR, model=MODEL, prompt=PROMPTS,
                max_tokens=lograndint(4, 16), n=randint(1, 3))  # the engine's defaults: concurrency auto
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


def run_rate_limited(options: tuple, concurrency) -> dict:
    """`Completion.test` over RATE_POINTS distinct points on a fresh rate-limited server and a fresh cache."""
    data = [{"question": f"What is {i} + {i + 1}?", "answer": 2 * i + 1} for i in range(RATE_POINTS)]
    with fake_server_process(RATE_LATENCY, False, False, *options, "--retry-after", RATE_RETRY_AFTER) as base_url, \
            tempfile.TemporaryDirectory() as cache, Session(cache_path=cache, seed=41) as session:
        session.catalog.add({"name": MODEL, "provider": "compatible", "chat": True, "base_url": base_url,
                             "price_per_1k": PRICE_PER_1K})
        start = time.perf_counter()
        Completion.test(data, {"model": MODEL, "prompt": "{question}", "max_tokens": 8}, eval_func,
                        logging_level=logging.ERROR, concurrency=concurrency)
        wall = time.perf_counter() - start
        limits = [limit.state() for limit in session.requester.providers.limiters._limits.values()]
        stats = server_stats(base_url)
        later = [i for i, t in enumerate(stats["arrived_s"]) if t >= WARM_UP_S]  # after an adaptive limit's start
        late = len(set(later) & set(stats["refused"]))
        return {"wall_s": wall, **stats, "limit": limits[0] if limits else None,
                "late_share": late / max(1, len(later))}


def rate_limited() -> None:
    for label, options in RATE_LIMITS:
        print(f"## rate-limited server: 429 + Retry-After {RATE_RETRY_AFTER} s beyond {label}, "
              f"{RATE_LATENCY * 1000:.0f} ms per answer; Completion.test over {RATE_POINTS} points", flush=True)
        fixed = {}
        for concurrency in FIXED:
            r = fixed[concurrency] = run_rate_limited(options, concurrency)
            print(f"  fixed {concurrency:3d}          {r['wall_s']:6.2f} s, {r['rate_limited']:4d} of "
                  f"{r['requests']:4d} requests answered 429 ({r['rate_limited'] / r['requests']:.1%}; after the "
                  f"first {WARM_UP_S:g} s {r['late_share']:.1%})", flush=True)
        r = run_rate_limited(options, "auto")
        best = min(fixed, key=lambda c: fixed[c]["wall_s"])
        state = r["limit"] or {}
        print(f"  adaptive (default) {r['wall_s']:6.2f} s, {r['rate_limited']:4d} of {r['requests']:4d} requests "
              f"answered 429 ({r['rate_limited'] / r['requests']:.1%}; after the first {WARM_UP_S:g} s "
              f"{r['late_share']:.1%}); limit at the end {state.get('limit')}, most in flight {r['most_in_flight']} "
              "(server-side), " + (f"send rate {state['rate']} per second" if state.get("rate")
                                   else "send rate never engaged"))
        print(f"  best fixed ({best}) {fixed[best]['wall_s']:.2f} s: adaptive takes "
              f"{r['wall_s'] / fixed[best]['wall_s'] - 1:+.0%}", flush=True)


def main() -> None:
    engine_only = "--engine-only" in sys.argv[1:]
    print(f"## tune: this engine (default settings) vs the seed library (pyautogen 0.1.14), loopback server "
          f"answering after {LATENCY * 1000:.0f} ms, budget ${BUDGET:g}, {len(DATA)} points", flush=True)
    peer = None if engine_only else run_peer()
    engine = run_engine()
    for name, r in (("pyautogen 0.1.14", peer), ("engine", engine)):
        if r is not None:
            print(f"  {name:17} {r['wall_s']:8.1f} s, {r['trials']:3d} trials, {r['requests']:4d} requests, "
                  f"${r['dollars']:.6f} billed (server-side), best success {r['best_metric']}")
    speedup = f"{peer['wall_s'] / engine['wall_s']:8.1f}x" if peer else "(seed library skipped)"
    print(f"  speedup                {speedup}   (engine: concurrency auto, most in flight "
          f"{engine['most_in_flight']} (server-side), budget held: {engine['dollars'] <= BUDGET}; rerun "
          f"{engine['replay_s']:.1f} s, {engine['replay_requests']} requests, same best: {engine['replay_same_best']})",
          flush=True)
    rate_limited()


if __name__ == "__main__":
    main()
