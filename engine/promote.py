"""`python -m engine.promote [run_id=...|sweep=RUN|last] [name=...] [alias=production] [force=true]`: register a
tune's best config as an MLflow model version and point the alias at it (the last tune when no run_id is
given; with sweep=, the winner of that sweep run, or of the last sweep). A move
that changes the fields callers send, or worsens the test metric, is refused unless force=true."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from .cli import friendly_errors, launch, quiet_libraries
from .core.models import conf_dir
from .core.errors import ConfigError
from .mlflow.registry import promote, sweep_winner


@hydra.main(config_path=str(conf_dir()), config_name="promote", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    with friendly_errors():
        options = OmegaConf.to_object(cfg)
        if options.sweep and options.run_id:
            raise ConfigError("give run_id= (a tune) or sweep= (a sweep's winner), not both")
        run_id = sweep_winner(options.sweep, options.tracking.uri) if options.sweep else options.run_id
        version = promote(run_id, options.name, options.alias, options.tracking.uri, options.force)
    fields = version.tags.get("input_fields") if getattr(version, "tags", None) else None
    print(f"registered {version.name} version {version.version} from run {version.run_id}; "
          f"alias {options.alias!r} -> version {version.version}\n"
          f"load it with Completion.create(context, config=\"models:/{version.name}@{options.alias}\")"
          + (f"; each context needs the fields {fields}" if fields else "")
          + (f"\nagainst the previous {options.alias}: {version.tags['promotion.comparison']}"
             if getattr(version, "tags", None) and version.tags.get("promotion.comparison") else ""))


if __name__ == "__main__":
    launch(main, "promote")
