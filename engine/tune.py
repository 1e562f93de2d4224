"""`python -m engine.tune [overrides]`: compose the config, tune, test the best config, print a summary.

Hydra's own flags work: `-m` for sweeps, `--cfg job` to print the composed config, `--help`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .cli import apply_sandbox, friendly_errors, job_log, launch, quiet_libraries
from .core.config import to_run_config
from .core.errors import ConfigError
from .core.models import conf_dir
from .mlflow.tracking import swept_first
from .runner import run_experiment
from .session import current_session


def job_label(hydra_cfg) -> str | None:
    """The job's overrides as they are typed (`budget.optimization=0.01 · model=smollm2`), less the keys that
    say where things are: the start of the MLflow run's name. The sweep folder spells the same with `:` and `+`."""
    exclude = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    items = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") not in exclude]
    return " · ".join(swept_first(items)) or None  # in a sweep, the keys it varies first


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    with friendly_errors():
        hydra_cfg = HydraConfig.get()
        # one id for every job of a sweep, the same from any folder: its absolute path
        sweep = str(Path(hydra_cfg.sweep.dir).resolve()) if hydra_cfg.mode == RunMode.MULTIRUN else None
        run = to_run_config(cfg)
        apply_sandbox(run.sandbox)
        if run.config:
            raise ConfigError(f"config={run.config}: engine.tune searches for a config; to evaluate a saved one, "
                              "run python -m engine.test config=...")
        summary = run_experiment(run, hydra_cfg.runtime.output_dir, current_session(), sweep,
                                 label=job_label(hydra_cfg))  # names the MLflow run
    print("\n" + summary.table())
    job_log("summary\n" + summary.table())
    return summary.test_metric


if __name__ == "__main__":
    launch(main)
