"""tune and test against a deterministic loopback server: semantics, budgets, pruning, cache reuse."""
import json
import logging

import numpy as np
import pytest
from flaml.tune import randint

from engine import BudgetError, Completion, ConfigError, TemplateKeyError
from tests.support.helpers import DATA, PROMPTS, PRICE, eval_func, logged_trials, top, trial_of
from engine import current_session
from engine.tuning import Tuner, TuneSpec




def test_test_aggregates_as_documented(fake_models):
    config = {"model": "fake-chat", "prompt": "{question}", "max_tokens": 8}
    data = DATA[:5]
    avg = Completion.test(data, config, eval_func)
    assert avg["success"] == 1.0 and avg["success_rate"] == 1.0
    assert avg["cost"] > 0 and avg["inference_cost"] == pytest.approx(avg["cost"] / 5)
    answers = [1.0, 0.0, 1.0, 1.0, 0.0]
    graded = lambda responses, **p: {"success": answers[p["answer"] % 5]}  # noqa: E731
    data = [{"question": f"What is {i} + 0?", "answer": i} for i in range(5)]
    assert Completion.test(data, config, graded, agg_method="median")["success"] == 1.0
    assert Completion.test(data, config, graded, agg_method=np.median)["success"] == 1.0
    assert Completion.test(data, config, graded, agg_method="min")["success"] == 0.0
    named = Completion.test(data, config, graded, agg_method={"median_success": np.median, "avg_success": np.mean})
    assert named["median_success"] == 1.0 and named["avg_success"] == pytest.approx(0.6)


def test_test_can_return_responses_and_per_instance_results(fake_models):
    config = {"model": "fake-chat", "prompt": "{question}", "max_tokens": 3, "n": 2}
    agg, per_instance, responses = Completion.test(DATA[:3], config, eval_func,
                                                   return_responses_and_per_instance_result=True)
    assert len(per_instance) == 3 and per_instance[0] == {"success": True, "success_rate": 1.0}
    assert responses[0] == ["3", "3 #1"]


def test_concurrent_test_equals_sequential(landscape, tmp_path):
    config = {"model": "fake-chat", "prompt": "{question}", "max_tokens": 12, "temperature": 0.9}
    Completion.set_cache(41, str(tmp_path / "seq"))
    seq = Completion.test(DATA, config, eval_func, concurrency=1, return_responses_and_per_instance_result=True)
    Completion.set_cache(41, str(tmp_path / "par"))
    par = Completion.test(DATA, config, eval_func, concurrency=8, return_responses_and_per_instance_result=True)
    assert par == seq
    assert len(landscape.requests) == 2 * len(DATA)


def test_test_without_any_eval_func_returns_none(fake_models):
    current_session().last_eval_func = None  # no tune() before it in this session
    assert Completion.test(DATA[:2], {"model": "fake-chat", "prompt": "{question}"}) is None
    assert fake_models.requests == []


def tune(**kwargs):
    args = dict(data=DATA, metric="success", mode="max", eval_func=eval_func, model="fake-chat", prompt=PROMPTS,
                logging_level=logging.ERROR)
    args.update(kwargs)
    return Completion.tune(**args)


def test_tune_finds_a_config_that_test_and_create_accept(landscape, tmp_path):
    log = tmp_path / "trials.jsonl"
    best, analysis = tune(optimization_budget=0.05, num_samples=12, log_file_name=str(log), max_tokens=8)
    assert not ("temperature" in best and "top_p" in best)
    lines = logged_trials(log)
    chosen = trial_of(best, lines)  # a config that was tried in full, and none did better
    assert chosen is not None and not chosen["pruned"] and chosen["metrics"]["success"] == top(lines)
    result = Completion.test(DATA, best)  # eval_func from tune
    assert result["success"] == 1.0
    r = Completion.create(context=DATA[0], **best)
    assert Completion.extract_text(r)
    assert len(lines) == len(analysis.trials) - sum(t.last_result is None for t in analysis.trials)
    assert {"trial", "config", "metrics", "cost_usd", "paid_usd", "inference_cost_usd_per_instance", "prompt_tokens",
            "completion_tokens", "wall_time_s", "pruned"} <= set(lines[0])


def test_budget_is_a_hard_cap_recomputed_server_side(landscape):
    budget = 0.004
    best, _ = tune(optimization_budget=budget, num_samples=-1, concurrency=8, max_tokens=randint(4, 60))
    billed = landscape.billed(PRICE["prompt"], PRICE["completion"])
    assert 0 < billed <= budget
    assert best


def test_inference_budget_prunes_expensive_trials(landscape, tmp_path):
    log = tmp_path / "trials.jsonl"
    # long answers (max_tokens 41) cost about $0.0001 per point; the budget allows about 20 tokens
    best, _ = tune(optimization_budget=0.02, num_samples=10, inference_budget=0.00006, n=1,
                   max_tokens=randint(4, 64), log_file_name=str(log))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    pruned = [x for x in lines if x["pruned"] == "cost"]
    assert pruned, "expected at least one trial over the inference budget"
    assert all(x["data_used"] < len(DATA) for x in pruned if x["requests"])
    assert best["max_tokens"] < 30


def test_rerun_of_a_tune_costs_nothing(landscape, session):
    kwargs = dict(optimization_budget=0.01, num_samples=6, max_tokens=randint(4, 40))
    first, _ = tune(**kwargs)
    sent = len(landscape.requests)
    spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=0.01, num_samples=6, progress=False,
                    space={"model": "fake-chat", "prompt": PROMPTS, "max_tokens": randint(4, 40)})
    tuner = Tuner(spec, session.requester, session.seed)
    second, _ = tuner.run()
    assert len(landscape.requests) == sent and tuner.guard.paid == 0 and tuner.guard.saved > 0
    assert second == first


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(metric="accuracy"), ConfigError, "'accuracy' is not in eval_func's result"),
    (dict(mode="maximize"), ConfigError, "mode must be 'min' or 'max'"),
    (dict(data=[]), ConfigError, "data is empty"),
    (dict(prompt="{question} {missing}"), TemplateKeyError, "'missing' is missing in data point 0"),
    (dict(temperature=0.5, top_p=0.9), ConfigError, "not both"),
    (dict(optimization_budget=0), BudgetError, "optimization_budget must be a finite number of dollars > 0"),
    (dict(optimization_budget=float("nan")), BudgetError, "optimization_budget must be a finite number"),
    (dict(optimization_budget=float("inf")), BudgetError, "optimization_budget must be a finite number"),
    (dict(inference_budget=-1), BudgetError, "inference_budget must be a finite number of dollars > 0"),
    (dict(optimization_budget=1e-9), BudgetError, "below the cheapest possible request"),
])
def test_bad_input_fails_before_any_spend(fake_models, kwargs, error, match):
    with pytest.raises(error, match=match):
        tune(**{"optimization_budget": 0.01, **kwargs})
    assert fake_models.requests == []


def test_missing_key_in_a_later_point_is_named_with_its_index(fake_models):
    data = DATA[:3] + [{"answer": 1}]
    with pytest.raises(TemplateKeyError, match="'question' is missing in data point 3"):
        tune(data=data, optimization_budget=0.01)
    assert fake_models.requests == []


def test_concurrent_requests_retry_transient_faults(fake_models):
    fake_models.fail_next({"status": 429, "headers": {"Retry-After": "0.2"}}, {"status": 502}, {"drop": True})
    config = {"model": "fake-chat", "prompt": "{question}", "max_tokens": 4, "max_retry_period": 10}
    result = Completion.test(DATA[:6], config, eval_func, concurrency=4)
    assert result["success"] == 1.0
    assert len(fake_models.requests) == 6 + 3


def test_concurrent_requests_fail_fast_on_a_refused_key(fake_models):
    fake_models.fail_next({"status": 401})
    with pytest.raises(Exception, match="HTTP 401"):
        Completion.test(DATA[:1], {"model": "fake-chat", "prompt": "{question}"}, eval_func)


def test_a_tune_stopped_by_its_budget_replays_from_the_cache_for_free(landscape, session):
    space = {"model": "fake-chat", "prompt": PROMPTS, "max_tokens": randint(4, 60)}

    def run():
        spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=0.003, num_samples=-1,
                        progress=False, concurrency=8, space=dict(space))
        tuner = Tuner(spec, session.requester, session.seed)
        best, _ = tuner.run()
        return tuner, best

    first, best = run()
    assert first.stopped_by_budget and first.guard.paid <= 0.003
    sent = len(landscape.requests)
    second, again = run()
    assert len(landscape.requests) == sent and second.guard.paid == 0
    assert again == best and len(second.trials) == len(first.trials)
    assert landscape.billed(PRICE["prompt"], PRICE["completion"]) <= 0.003


def test_a_key_passed_in_config_list_is_redacted_from_the_trial_log(landscape, tmp_path):
    log = tmp_path / "trials.jsonl"
    secret = "sk-inline-SECRET-0123456789abcdef"
    tune(optimization_budget=0.01, num_samples=2, log_file_name=str(log), max_tokens=8,
         config_list=[{"api_key": secret}])
    text = log.read_text()
    assert "SECRET" not in text and '"api_key": "***"' in text
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in landscape.requests]
    assert all(h["authorization"] == f"Bearer {secret}" for h in headers)


def test_numpy_metric_values_are_aggregated(fake_models):
    def np_eval(responses, **point):
        ok = np.array([r.split()[:1] == [str(point["answer"])] for r in responses])
        return {"success": ok.any(), "success_rate": ok.mean(), "count": np.int64(len(ok))}
    result = Completion.test(DATA[:4], {"model": "fake-chat", "prompt": "{question}", "max_tokens": 4}, np_eval)
    assert result["success"] == 1.0 and result["success_rate"] == 1.0 and result["count"] == 1.0
    assert all(type(result[k]) is float for k in ("success", "success_rate", "count"))


def test_tune_searches_chat_prefixes(landscape):
    prefixes = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{question}"}],
                [{"role": "user", "content": "Think step by step. {question}"}]]
    best, _ = Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.02, num_samples=4,
                              model="fake-chat", messages=prefixes, max_tokens=8, logging_level=logging.ERROR)
    assert best["messages"] in prefixes and "prompt" not in best
    assert Completion.test(DATA, best)["success"] == 1.0
    sent = landscape.completions()[0]["messages"]
    assert sent[-1]["content"].endswith("?") and "{question}" not in sent[-1]["content"]


def test_tune_searches_several_models_each_with_its_own_settings(landscape, tmp_path):
    log = tmp_path / "trials.jsonl"
    best, analysis = tune(optimization_budget=0.03, num_samples=6, model=["fake-chat", "fake-text"], max_tokens=8,
                          log_file_name=str(log))
    paths = {r["path"] for r in landscape.requests}
    assert paths == {"/v1/chat/completions", "/v1/completions"}  # both models were tried
    trials = logged_trials(log)
    assert {t["config"]["model"] for t in trials} == {"fake-chat", "fake-text"}
    chosen = trial_of(best, trials)  # the best config is one tried in full on its own model, and none did better
    assert chosen is not None and not chosen["pruned"] and chosen["metrics"]["success"] == top(trials)


def test_a_metric_named_like_an_accounting_figure_keeps_its_value(fake_models):
    """eval_func may measure its own `cost` or `requests`: test() keeps them, and its own figures move aside."""
    def own_cost(responses, **point):
        return {"success": 1, "cost": 42.0, "requests": 7}

    result = Completion.test([{"question": "What is 1 + 2?", "answer": 3}], own_cost, model="fake-chat",
                             prompt="{question}", max_tokens=4)
    assert result["cost"] == 42.0 and result["requests"] == 7
    assert result["engine.requests"] == 1 and result["engine.cost"] > 0 and result["inference_cost"] > 0
