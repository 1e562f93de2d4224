"""`python -m engine.test config=PATH [overrides]`: evaluate a saved config on the task's test split."""
from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig

from .cli import apply_sandbox, friendly_errors, launch, quiet_libraries
from .core.config import to_run_config
from .core.errors import ConfigError
from .core.models import conf_dir
from .runner import load_saved_config, session_for
from .session import current_session
from .core.stats import aggregation, estimate, with_functions
from .tasks import load_task
from .evaluate.testing import run_test, worst_case


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    with friendly_errors():
        run = to_run_config(cfg)
        apply_sandbox(run.sandbox)
        if not run.config:
            raise ConfigError("config: give the saved config to test, e.g. config=outputs/.../best_config.json")
        config = load_saved_config(run.config)
        task = load_task(run.task)
        session = session_for(run, current_session())
        data = task.split("test", run.task.test_size)
        cap = run.budget.test if run.budget.test is not None else run.budget.optimization
        worst = worst_case(session.requester, run.cache.seed, data, config)
        print(f"preflight: {len(data)} points; this config could cost up to ${worst:.6f} (every request at its "
              f"worst case); cap ${cap:g} (budget.test)", file=sys.stderr)
        agg = aggregation(run.tune.agg_method, task.metric)  # the figure and its interval: the tune's aggregate
        tested = run_test(session.requester, run.cache.seed, data, config, task.eval_func,
                          agg_method=with_functions(run.tune.agg_method), concurrency=run.parallel.concurrency,
                          progress=run.progress, budget=cap)
        result = tested.merged()
        interval = estimate([float(p[agg.source(p)]) for p in tested.per_instance if agg.source(p)], agg)
        if interval is not None:  # how sure the figure is: its standard error and 95% interval
            result.update(interval.as_metrics(task.metric), **{f"{task.metric}_interval": interval.text()})
    print(json.dumps({"task": task.name, "config": config, **result}, indent=2, default=str))
    return tested.metrics.get(task.metric)


if __name__ == "__main__":
    launch(main)
