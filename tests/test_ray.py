"""Trials on a local Ray: they run in worker processes, the budget holds server-side, every response reaches
the driver's cache (a rerun on the driver pays nothing) and the driver still reports every trial."""
import os

import pytest
from flaml.tune import lograndint, randint

from tests.support.helpers import PRICE, eval_func
from engine.tuning import Tuner, TuneSpec
from engine.tuning.spec import RaySettings
from engine.core.errors import ConfigError
from tests.support.fake_openai import landscape_responder

ray = pytest.importorskip("ray")
DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(3, 7) for b in range(2, 5)]  # 12
BUDGET = 0.012


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    ray.shutdown()


def tune(session, ray_settings, reported=None):
    spec = TuneSpec(DATA, "success", "max", eval_func, inference_budget=0.002, optimization_budget=BUDGET,
                    num_samples=-1, progress=False, ray=ray_settings, trials=2,  # same decisions both ways
                    space={"model": "fake-ignores-n", "prompt": ["{question}", "Think step by step. {question}"],
                           "max_tokens": lograndint(4, 16), "n": randint(1, 3)})
    tuner = Tuner(spec, session.requester.for_run(), session.seed, on_trial=reported.append if reported else None)
    best, _ = tuner.run()
    return tuner, best


@pytest.mark.parametrize("share_cache", [False, True], ids=["responses-through-the-driver", "shared-cache"])
def test_trials_run_on_ray_workers_under_one_budget(fake_models, session, share_cache):
    fake_models.responder = landscape_responder
    fake_models.latency = 0.05
    reported = [None]
    tuner, best = tune(session, RaySettings(workers=2, share_cache=share_cache), reported)

    workers = tuner._remote.workers_seen
    assert workers and all(not w.endswith(f":{os.getpid()}") for w in workers)  # not in this process
    assert len(reported) - 1 == len(tuner.trials) >= 3  # the driver logged every trial (MLflow's hook)
    billed = fake_models.billed(PRICE["prompt"], PRICE["completion"])
    assert 0 < billed <= BUDGET + 1e-12  # server-side
    assert abs(tuner.guard.paid - billed) < 1e-9  # the workers' spending reached the driver's guard
    assert fake_models.paid_twice() == 0

    sent = len(fake_models.requests)
    again, best_again = tune(session, None)  # on the driver alone, from its cache
    assert len(fake_models.requests) == sent and again.guard.paid == 0
    assert best_again == best


def test_an_eval_func_from_a_module_workers_cannot_import_travels_by_value(fake_models, session, tmp_path):
    """Task packs are loaded from their files under a name no worker can import (engine_experiments.*)."""
    import importlib.util
    import sys

    path = tmp_path / "pack.py"
    path.write_text("def right(text, answer):\n    return text.split()[:1] == [str(answer)]\n\n"
                    "def eval_func(responses, **point):\n"
                    "    ok = [right(r, point['answer']) for r in responses]\n"
                    "    return {'success': any(ok), 'success_rate': sum(ok) / len(ok)}\n")
    spec = importlib.util.spec_from_file_location("engine_experiments_unimportable.pack", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fake_models.responder = landscape_responder
    tuner = Tuner(TuneSpec(DATA, "success", "max", module.eval_func, optimization_budget=0.004, num_samples=2,
                           progress=False, ray=RaySettings(workers=2), space={"model": "fake-chat", "max_tokens": 8,
                                                                              "prompt": "{question}", "n": 1}),
                  session.requester.for_run(), session.seed)
    best, _ = tuner.run()
    workers = tuner._remote.workers_seen
    assert workers and all(not w.endswith(f":{os.getpid()}") for w in workers)  # graded on the workers
    assert tuner.trials and not [r.error for r in tuner.trials if r.error]  # none failed to load eval_func there
    assert tuner.best_metric is not None  # and the grades came back


def test_ray_settings_are_checked():
    with pytest.raises(ConfigError, match="parallel.workers"):
        RaySettings(workers=0)
    with pytest.raises(ConfigError, match="parallel.address"):
        RaySettings(address="")
