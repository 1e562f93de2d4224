"""The tuner's own behaviour: failing trials skipped, a search pruned everywhere ends, prompts told apart."""
import logging

import pytest
from flaml.tune import randint

from tests.support.helpers import PRICE, eval_func, logged_trials, top, trial_of
from engine import BudgetError, Completion
from engine.tuning import build_space
from tests.support.fake_openai import landscape_responder

DATA = [{"question": f"What is {i} + {i}?", "answer": 2 * i} for i in range(1, 13)]


def test_a_trial_that_fails_with_a_client_error_is_skipped(fake_models, tmp_path):
    fake_models.responder = landscape_responder
    fake_models.fail_next({"status": 400, "message": "context length exceeded"})
    log = tmp_path / "trials.jsonl"
    best, _ = Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.02, num_samples=4,
                              model="fake-chat", prompt=["{question}"], max_tokens=8, logging_level=logging.ERROR,
                              log_file_name=str(log))
    trials = logged_trials(log)
    failed = [t for t in trials if t["pruned"] == "error"]
    assert len(failed) == 1 and "HTTP 400: context length exceeded" in failed[0]["error"]
    assert len(trials) == 4  # the search went on after it
    chosen = trial_of(best, trials)  # and chose among the others, the best of them
    assert chosen is not None and chosen is not failed[0] and not chosen["pruned"]
    assert chosen["metrics"]["success"] == top(trials)


def test_a_search_pruned_everywhere_ends(fake_models):
    budget = 0.05
    with pytest.raises(BudgetError, match="no config was evaluated in full"):
        Completion.tune(DATA, "success", "max", eval_func, inference_budget=1e-9, optimization_budget=budget,
                        num_samples=-1, model="fake-chat", prompt="{question}", max_tokens=randint(4, 40),
                        logging_level=logging.ERROR)
    # it ended by itself, not by spending its budget on trials that are all pruned: the server's bill says so
    assert fake_models.wait_idle()
    assert 0 < fake_models.billed(PRICE["prompt"], PRICE["completion"]) < budget / 10


def test_callable_prompts_are_told_apart_for_pruning():
    short, long_ = (lambda d: "a"), (lambda d: "a " * 100)
    space = build_space({"model": "m", "prompt": [short, long_]})
    assert space.choice_key({"model": "m", "prompt": short}) != space.choice_key({"model": "m", "prompt": long_})


def test_a_lone_surrogate_in_the_data_is_refused_before_anything_is_sent(fake_models):
    from engine.core.errors import ConfigError

    broken = DATA[:3] + [{"question": "What is 1 + \ud83d?", "answer": 2}]
    with pytest.raises(ConfigError, match=r"data point 3, field 'question' holds text that is not valid Unicode "
                                          r"\(surrogates not allowed '\\ud83d' at position 12\)"):
        Completion.tune(broken, "success", "max", eval_func, optimization_budget=0.01, model="fake-chat",
                        prompt="{question}", logging_level=logging.ERROR)
    with pytest.raises(ConfigError, match="not valid Unicode"):
        Completion.test(broken, {"model": "fake-chat", "prompt": "{question}", "max_tokens": 4}, eval_func)
    assert not fake_models.requests
