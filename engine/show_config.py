"""What Hydra's `--cfg job` cannot say on its own, and the typo it cannot name.

`--cfg job` prints the composed config, where `search.prompts: null` means "the task's prompts": this prints
the search space that will run instead, and with `-m` one config per job of the sweep (Hydra refuses `-m` with
`--cfg`). A mistyped key (`budgt.optimization=1`) gets the engine's message with the key it resembles, before
Hydra suggests `+budgt.optimization=1`, which would only add a key the engine refuses.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing

CFG_FLAGS = ("--cfg", "-c")
MULTIRUN_FLAGS = ("-m", "--multirun")


def unknown_key(override: str, schema) -> str | None:
    """The engine's message for an override whose key the schema lacks, else None. Additions (`+key`),
    deletions (`~key`) and Hydra's own keys are left to Hydra and to the checks after composition."""
    if "=" not in override or override.startswith(("+", "~", "-")):
        return None
    key = override.split("=", 1)[0]
    if key.startswith("hydra.") or key == "hydra":
        return None
    node, path = schema, ""
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return None  # a dict-valued field (price_per_1k.prompt): its keys are free
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            near = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            hint = f"did you mean {path}{near[0]}? " if near else ""
            where = path.rstrip(".") or "the config"
            return f"{path}{part}: unknown key; {hint}{where} has {sorted(names)}"
        node = typing.get_type_hints(node)[part]
        node = next((a for a in typing.get_args(node) if dataclasses.is_dataclass(a)), node)  # Optional[X]
        path += part + "."
    return None


def refuse_unknown_keys(argv: list[str], schema) -> None:
    for arg in argv[1:]:
        message = unknown_key(arg, schema)
        if message:
            raise SystemExit(f"error: {message}")


def _without_cfg(args: list[str]) -> tuple[list[str], bool]:
    """`args` less `--cfg job` (or `-c job`), and whether it was there."""
    for flag in CFG_FLAGS:
        if flag in args:
            i = args.index(flag)
            if i + 1 < len(args) and args[i + 1] == "job":
                return args[:i] + args[i + 2:], True
    return args, False


def wants_job_config(argv: list[str]) -> bool:
    """`--cfg job` / `-c job` (with or without -m) and no other Hydra flag this module does not handle."""
    rest, asked = _without_cfg(argv[1:])
    return asked and not any(a.startswith("-") and a not in MULTIRUN_FLAGS + ("--resolve",) for a in rest)


def job_overrides(argv: list[str]) -> tuple[list[list[str]], bool]:
    """The override list of each job the command would run (one without -m), and whether to resolve."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args, _ = _without_cfg(argv[1:])
    resolve = "--resolve" in args
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    if not multirun:
        return [overrides], resolve
    jobs = [job for batch in BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides(overrides), None) for job in batch]
    return jobs, resolve


def effective_search(cfg) -> None:
    """Fill the search group's nulls with what the task gives them (its prompts, stop lists, max_tokens), by
    the runner's own rule."""
    from omegaconf import open_dict

    from .core.config import to_run_config
    from .runner import task_defaults
    from .tasks import load_task

    run = to_run_config(cfg)
    given = task_defaults(run.search, load_task(run.task))
    search = cfg.search
    with open_dict(search):
        if not search.messages:
            search.prompts = given["prompts"]
        search.stops, search.max_tokens = given["stops"], given["max_tokens"]
        if not search.models:
            search.models = [cfg.model.name]


def print_job_configs(argv: list[str], config_name: str) -> None:
    """Compose each job's config as Hydra would and print it, the search space filled in."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from .core.models import conf_dir

    jobs, resolve = job_overrides(argv)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for number, overrides in enumerate(jobs):
            cfg = compose(config_name=config_name, overrides=overrides)
            if config_name == "config":
                effective_search(cfg)
            if len(jobs) > 1:
                print(f"# job {number}: {' '.join(overrides) or '(no override)'}")
            if config_name == "config" and cfg.search.temperature is None and cfg.search.top_p is None:
                print("# search.temperature and search.top_p both null: the tuner searches one of the two")
            print(OmegaConf.to_yaml(cfg, resolve=resolve), end="" if len(jobs) == 1 else "\n")
