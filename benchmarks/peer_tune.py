"""Run by the seed library's own venv (pyautogen 0.1.14, openai<1): its Completion.tune on the bench task.

Usage: python -m benchmarks.peer_tune BASE_URL CACHE_DIR BUDGET INFERENCE_BUDGET (with the repo root on
PYTHONPATH); prints one JSON line.
"""
import json
import logging
import sys
import time

from autogen import oai
from flaml import tune

from benchmarks.peer_task import DATA, MODEL, PROMPTS, eval_func

base_url, cache_dir, budget, inference_budget = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
oai.Completion.set_cache(41, cache_dir)
oai.Completion.retry_wait_time = 0.5
start = time.perf_counter()
best, analysis = oai.Completion.tune(
    DATA, "success", "max", eval_func, inference_budget=inference_budget, optimization_budget=budget,
    num_samples=-1, logging_level=logging.ERROR, model=MODEL, prompt=PROMPTS, max_tokens=tune.lograndint(4, 16),
    n=tune.randint(1, 3), allow_format_str_template=True,  # 0.1.14 sends string templates literally without it
    config_list=[{"model": MODEL, "api_base": base_url, "api_key": "no-key"}])
trials = [t for t in analysis.trials if t.last_result]
print(json.dumps({"wall_s": time.perf_counter() - start, "trials": len(trials),
                  "best_metric": analysis.best_result.get("success") if analysis.best_result else None,
                  "best": {k: v for k, v in best.items() if k != "config_list"}}, default=str))
