"""Regression tests for faults found in review: money accounting on failures, stopping, dedup, limits."""
import logging
import time

import pytest
from flaml.tune import randint

from engine import BudgetError, Completion, ProviderError
from engine.budget import BudgetGuard, worst_case_cost
from engine.evaluation import Evaluator, aggregate
from engine.models import ModelSpec
from engine.sandbox import run_python
from engine.tuning import build_space
from fake_openai import landscape_responder

PRICE = {"prompt": 0.001, "completion": 0.002}
DATA = [{"question": f"What is {i} + {i}?", "answer": 2 * i} for i in range(1, 13)]


def eval_func(responses, **point):
    return {"success": any(r.split()[:1] == [str(point["answer"])] for r in responses)}


def test_a_fan_out_that_falls_back_is_paid_and_counted_in_full(fake_models, session):
    fake_models.fail_next({"status": 400})  # one of the 4 fanned-out choices fails: fall back to fake-chat
    guard = BudgetGuard(1.0)
    evaluator = Evaluator(session.requester, 41, concurrency=1, budget=guard, progress=False)
    config = {"model": "fake-ignores-n", "prompt": "{question}", "n": 4, "max_tokens": 5,
              "config_list": [{}, {"model": "fake-chat"}]}
    run = evaluator.run(config, DATA[:1])
    billed = fake_models.billed(PRICE["prompt"], PRICE["completion"])
    assert run.outcomes[0].request.model == "fake-chat"
    assert guard.paid == pytest.approx(billed) and run.spent == pytest.approx(billed)
    assert guard.reserved == pytest.approx(0)


def test_a_failed_point_stops_the_others_and_settles_the_budget(fake_models, session):
    fake_models.fail_next({"status": 400})
    guard = BudgetGuard(1.0)
    evaluator = Evaluator(session.requester, 41, concurrency=2, budget=guard, progress=False)
    with pytest.raises(ProviderError, match="HTTP 400"):
        evaluator.run({"model": "fake-chat", "prompt": "{question}", "max_tokens": 4}, DATA[:6])
    sent = len(fake_models.requests)
    time.sleep(0.5)
    # points already running when the error came back may finish; nothing starts after, nothing runs on
    assert len(fake_models.requests) == sent < 6
    assert guard.reserved == pytest.approx(0) and guard.paid == pytest.approx(
        fake_models.billed(PRICE["prompt"], PRICE["completion"]))


def test_a_trial_that_fails_with_a_client_error_is_skipped(fake_models):
    fake_models.responder = landscape_responder
    fake_models.fail_next({"status": 400, "message": "context length exceeded"})
    best, _ = Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.02, num_samples=4,
                              model="fake-chat", prompt=["{question}"], max_tokens=8, logging_level=logging.ERROR)
    assert best["model"] == "fake-chat"


def test_a_search_pruned_everywhere_ends(fake_models):
    start = time.monotonic()
    with pytest.raises(BudgetError, match="no config was evaluated in full"):
        Completion.tune(DATA, "success", "max", eval_func, inference_budget=1e-9, optimization_budget=0.05,
                        num_samples=-1, model="fake-chat", prompt="{question}", max_tokens=randint(4, 40),
                        logging_level=logging.ERROR)
    assert time.monotonic() - start < 60


def test_identical_requests_in_flight_are_paid_once(fake_models):
    same = [DATA[0]] * 6
    result = Completion.test(same, {"model": "fake-chat", "prompt": "{question}", "max_tokens": 4}, eval_func,
                             concurrency=6)
    assert len(fake_models.requests) == 1 and result["success"] == 1.0 and result["cache_hits"] == 5


def test_literal_braces_without_a_context_are_sent_as_they_are(fake_models):
    Completion.create(model="fake-chat", prompt='Reply with JSON like {"a": 1}')
    assert fake_models.completions()[0]["messages"][0]["content"] == 'Reply with JSON like {"a": 1}'


def test_a_retry_after_longer_than_the_retry_period_fails_at_once(fake_models):
    fake_models.fail_next({"status": 429, "headers": {"Retry-After": "30"}})
    start = time.monotonic()
    with pytest.raises(ProviderError, match="HTTP 429"):
        Completion.create(model="fake-chat", prompt="hi", max_retry_period=1)
    assert time.monotonic() - start < 2


def test_callable_prompts_are_told_apart_for_pruning():
    short, long_ = (lambda d: "a"), (lambda d: "a " * 100)
    space = build_space({"model": "m", "prompt": [short, long_]})
    assert space.choice_key({"model": "m", "prompt": short}) != space.choice_key({"model": "m", "prompt": long_})


def test_named_aggregation_picks_the_metric_the_name_ends_with():
    per = [{"success": 1, "expected_success": 0.5}, {"success": 0, "expected_success": 0.25}]
    assert aggregate(per, {"avg_expected_success": lambda v: sum(v) / len(v)}) == {"avg_expected_success": 0.375}


def test_worst_case_counts_best_of_and_tool_definitions():
    spec = ModelSpec(name="m", price_per_1k={"prompt": 1.0, "completion": 1.0})
    base = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    plain = worst_case_cost(spec, base)
    assert worst_case_cost(spec, {**base, "best_of": 3}) == pytest.approx(plain + 20 / 1000)
    tools = [{"type": "function", "function": {"name": "lookup", "description": "x" * 500}}]
    assert worst_case_cost(spec, {**base, "tools": tools}) > plain + 0.5


def test_the_sandbox_refuses_to_start_processes(tmp_path):
    marker = tmp_path / "escaped"
    program = f"import os, sys\nos.system(sys.executable + ' -c \"open(\\'{marker}\\', \\'w\\')\"')\n"
    result = run_python(program)
    assert not result.passed and "not allowed in the sandbox" in result.reason and not marker.exists()
