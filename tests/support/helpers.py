"""Helpers the tests share, and the scripts they run in child processes too (pytest fixtures stay in
tests/conftest.py): the data and prices of the fake models, the eval_func most tests grade with, the fake
models' catalog entries, the Hydra compose helper, waiting on a condition, free ports, and the environment in
which a child process can `import tests.support`; reading a tune's trial log."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repo root: `tests` is importable from here

PRICE = {"prompt": 0.001, "completion": 0.002}  # USD per 1K tokens of the fake models
# twelve sums, and two prompts of which the fake server's landscape answers the second one right
DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a, b in
        [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (2, 2), (4, 5), (6, 1), (8, 3)]]
PROMPTS = ["{question}", "Think step by step. {question}"]


def eval_func(responses, **point):
    """Right when an answer starts with the expected number (the fake server answers sums first)."""
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


def register_fake_models(catalog, base_url: str) -> None:
    """Catalog entries on the fake server: chat, text completion, and a chat model that ignores n."""
    for name, chat, ignores_n in (("fake-chat", True, False), ("fake-text", False, False),
                                  ("fake-ignores-n", True, True)):
        catalog.add({"name": name, "provider": "compatible", "chat": chat, "base_url": base_url,
                     "price_per_1k": PRICE, "ignores_n": ignores_n})


def composed(*overrides):
    """The run config Hydra composes from conf/ with these overrides (not yet validated)."""
    from hydra import compose, initialize_config_dir

    from engine.core.config import register_configs
    from engine.core.models import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def wait_until(condition, seconds: float = 60.0, every: float = 0.01) -> bool:
    """Poll `condition` until it holds or `seconds` pass; whether it held (a wait on an event, not a nap:
    it returns as soon as the condition holds, and `seconds` only bounds a wait that would otherwise hang)."""
    deadline, tick = time.monotonic() + seconds, threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        tick.wait(every)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict:
    """os.environ with the repo root first on PYTHONPATH, so that a child process started from any folder
    can `from tests.support.helpers import ...` (no sys.path edits in the child's script). The source tree's
    `engine` comes first on that path too: not for a child that must import an installed wheel."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def logged_trials(path) -> list[dict]:
    """The trials a tune wrote to its log_file_name, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def trial_of(config: dict, trials: list[dict]) -> dict | None:
    """The logged trial that tried `config` (config_list left out: the log redacts the keys in it)."""
    def bare(c):
        return {k: v for k, v in c.items() if k != "config_list"}

    return next((t for t in trials if bare(t["config"]) == bare(config)), None)


def top(trials: list[dict], metric: str = "success") -> float:
    """The best `metric` (mode max) among the trials evaluated in full (not pruned)."""
    return max(t["metrics"][metric] for t in trials if not t["pruned"] and t["metrics"].get(metric) is not None)
