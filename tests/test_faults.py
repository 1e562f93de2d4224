"""The budget is a hard cap whatever the provider does, checked against what the loopback fault server itself
billed: timeouts it still bills, answers above their bound, bad answers, processes racing on one cache, and
eval_funcs that would fail after money was spent."""
import contextlib
import logging
import math
import subprocess
import sys
import textwrap

import pytest
from flaml.tune import randint

from tests.support.helpers import DATA, PROMPTS, PRICE, child_env, eval_func, wait_until
from engine import BudgetError, Completion, ConfigError, ProviderError, SearchFailedError
from engine.core.errors import BudgetOverrunError
from engine.tuning import Tuner, TuneSpec
from tests.support.fake_openai import FakeOpenAI, landscape_responder



def tuner(session, budget, concurrency=8, **space):
    spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=budget, num_samples=-1, progress=False,
                    concurrency=concurrency, space={"model": "fake-chat", "prompt": PROMPTS, "max_tokens": randint(4, 30), **space})
    return Tuner(spec, session.requester, session.seed)


def test_timeouts_the_server_still_bills_never_push_its_count_over_the_budget(landscape, session):
    """Every 4th request takes longer than the client waits, and the server finishes and bills it anyway."""
    landscape.fault_rule = lambda i: {"stall": 1.0} if i % 4 == 3 else None
    budget = 0.004
    t = tuner(session, budget, request_timeout=0.3, retry_wait_time=0.05, max_retry_period=20)
    with ends_cleanly():
        t.run()
    assert landscape.wait_idle()  # the stalled answers the client gave up on are made and billed server-side
    billed = landscape.billed(PRICE["prompt"], PRICE["completion"])
    assert t.guard.unanswered_requests > 0
    assert billed <= budget, f"the server billed ${billed:.6f} on a ${budget} budget"
    assert t.guard.paid + t.guard.unanswered >= billed - 1e-12  # the engine never counts less than was billed


@contextlib.contextmanager
def ends_cleanly():
    """A budget spent on timeouts may end the search before any trial finished: that is a clean stop too."""
    try:
        yield
    except BudgetError as exc:
        if "no config was evaluated" not in str(exc):
            raise


def test_an_answer_above_its_reservation_ends_the_tune_saying_by_how_much(landscape, session):
    landscape.extra_completion_tokens = 60  # far beyond max_tokens + the model's margin
    with pytest.raises(BudgetOverrunError) as caught:
        tuner(session, 0.05).run()
    message = str(caught.value)
    assert "compatible endpoint" in message and "completion tokens" in message and "assumed at most" in message
    assert "Dollars paid in this run" in message and "conf/model/fake-chat.yaml" in message
    assert landscape.wait_idle()
    sent = len(landscape.requests)
    assert not wait_until(lambda: len(landscape.requests) > sent, seconds=0.3)  # nothing is sent after it


def test_an_overrun_counts_every_answer_that_was_in_flight_when_it_stopped(landscape, session):
    """Many requests in flight, each billed far beyond its bound: the figure the engine gives is the bill."""
    landscape.extra_completion_tokens = 100_000
    landscape.latency = 0.05
    t = tuner(session, 50.0, concurrency=16)
    with pytest.raises(BudgetOverrunError) as caught:
        t.run()
    assert landscape.wait_idle()
    billed = landscape.billed(PRICE["prompt"], PRICE["completion"])
    answered = sum(1 for r in landscape.requests if "usage" in r)
    assert answered > 1  # others were in flight when the first overrun was seen
    assert t.guard.paid >= billed - 1e-9
    shown = float(str(caught.value).rsplit("included: $", 1)[1].rstrip("."))
    assert shown >= billed - 1e-6, f"the engine said ${shown} while the server billed ${billed}"


def test_a_few_tokens_past_max_tokens_are_within_the_margin(landscape, session):
    landscape.extra_completion_tokens = 2  # as llama.cpp does on CJK or emoji output
    t = tuner(session, 0.01)
    with ends_cleanly():
        t.run()
    assert t.trials and landscape.billed(PRICE["prompt"], PRICE["completion"]) <= 0.01


BAD_ANSWERS = [
    ({"body": b"<html>502 Bad Gateway</html>"}, "the answer is not JSON"),
    ({"body": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "3"'}, "the answer is not JSON"),
    ({"body": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "3"}}]}'}, "has no usage"),
    ({"body": b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 0}}'}, "has no choices"),
]


@pytest.mark.parametrize("fault, cause", BAD_ANSWERS)
def test_a_bad_answer_names_the_endpoint_and_the_cause_and_is_never_cached(fake_models, fault, cause):
    fake_models.fail_next(fault)
    with pytest.raises(ProviderError, match=cause) as caught:
        Completion.create(model="fake-chat", prompt="What is 1 + 2?")
    assert "compatible endpoint" in str(caught.value) and "bad answer" in str(caught.value)
    r = Completion.create(model="fake-chat", prompt="What is 1 + 2?")  # asked again: not served from the cache
    assert Completion.extract_text(r) == ["3"] and len(fake_models.requests) == 2


@pytest.mark.parametrize("usage, shown", [({"completion_tokens": -5}, "-5"), ({"prompt_tokens": 3.5}, "3.5")])
def test_negative_or_fractional_usage_is_refused_not_credited(fake_models, usage, shown):
    fake_models.usage_override = usage
    with pytest.raises(ProviderError, match=f"usage.* is {shown}, not a number of tokens"):
        Completion.create(model="fake-chat", prompt="What is 1 + 2?")
    fake_models.usage_override = None
    Completion.create(model="fake-chat", prompt="What is 1 + 2?")
    assert len(fake_models.requests) == 2


def raises_on_empty(responses, **point):
    return {"success": int(responses[0].split()[0]) == point["answer"]}


@pytest.mark.parametrize("bad_eval, says", [
    (raises_on_empty, "eval_func raised IndexError"),
    (lambda responses, **p: [True], "must return a dict of metrics, got list"),
    (lambda responses, **p: {"accuracy": 1}, "'success' is not in eval_func's result"),
    (lambda responses, **p: {"success": "yes"}, "a metric must be a number"),
    (lambda responses, **p: {"success": float("nan")}, "a metric must be a finite number"),
])
def test_eval_func_faults_are_found_before_any_spend(fake_models, bad_eval, says):
    with pytest.raises(ConfigError, match=says):
        Completion.tune(DATA, "success", "max", bad_eval, optimization_budget=0.01, num_samples=2,
                        model="fake-chat", prompt="{question}", logging_level=logging.ERROR)
    assert fake_models.requests == []


RACER = textwrap.dedent("""
    import logging, sys
    from flaml.tune import randint
    from engine import Completion, Session
    from tests.support.helpers import eval_func, register_fake_models  # the repo root is on PYTHONPATH
    data = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(6) for b in range(3)]
    with Session(seed=41, cache_path=sys.argv[2]) as session:
        register_fake_models(session.catalog, sys.argv[1])
        Completion.tune(data, "success", "max", eval_func, optimization_budget=0.02, num_samples=5, concurrency=4,
                        model="fake-chat", prompt=["{question}", "Think step by step. {question}"],
                        max_tokens=randint(4, 30), n=1, logging_level=logging.ERROR)
    print("finished", flush=True)
""")


def test_four_processes_on_one_cache_pay_for_each_request_once(tmp_path):
    """n=1, so that two identical request bodies are one request (with n > 1 the engine asks a provider
    that honours n for further samples with the same body, on purpose)."""
    with FakeOpenAI(latency=0.05, responder=landscape_responder) as fake:
        cmd = [sys.executable, "-c", RACER, fake.base_url, str(tmp_path / "cache")]
        racers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
                  for _ in range(4)]
        outputs = [p.communicate(timeout=240) for p in racers]
        for (out, err), p in zip(outputs, racers):
            assert p.returncode == 0 and "finished" in out, err[-2000:]
        answered = sum(1 for r in fake.requests if "usage" in r)
        assert answered > 0 and fake.paid_twice() == 0, f"{fake.paid_twice()} of {answered} answers were paid twice"


def test_bad_answers_with_http_200_stay_counted_at_their_worst_and_repeated_ones_stop_the_tune(landscape, session):
    """A 200 the engine cannot use may still be billed: each is kept at its worst case (never freed), so even
    if the server billed every one of them in full the cap holds; three trials in a row of them stop the tune."""
    budget = 0.05
    landscape.fault_rule = lambda i: {"body": b"<html>502 Bad Gateway</html>"}
    t = tuner(session, budget)
    with pytest.raises(ProviderError, match=r"3 trials in a row got answers that cannot be used.*not JSON") as stop:
        t.run()
    assert "compatible endpoint" in str(stop.value)
    sent = len(landscape.requests)
    assert sent and t.guard.unanswered_requests == sent  # every one counted, none freed
    assert 0 < t.guard.unanswered <= budget  # billed in full, the server's count stays under the cap
    small = tuner(session, 0.002)  # and a budget that cannot take three of them ends on the budget instead
    with pytest.raises(BudgetError, match="no config was evaluated in full"):
        small.run()
    assert 0 < small.guard.unanswered <= 0.002 and small.guard.unanswered_requests > 0
    landscape.fault_rule = None


def test_a_prompt_every_request_of_which_is_refused_ends_saying_so_not_asking_for_more_money(landscape, session):
    """A 1 MB prompt: the provider answers 400 (context length) on every trial, which costs nothing."""
    landscape.fault_rule = lambda i: {"status": 400, "message": "This model's maximum context length is 8192 tokens"}
    t = tuner(session, 0.05)
    with pytest.raises(SearchFailedError, match=r"every trial failed .*none for lack of money.*maximum context") as e:
        t.run()
    assert "optimization_budget" not in str(e.value)
    landscape.fault_rule = None


def test_a_config_whose_metric_comes_out_nan_is_never_the_one_chosen(landscape, session):
    """eval_func gives NaN on some answers only (not on the dry run's): those trials cannot be ranked."""
    def nan_on_long(responses, **point):
        if len(responses[0].split()) > 6:
            return {"success": float("nan")}
        return eval_func(responses, **point)

    spec = TuneSpec(DATA, "success", "max", nan_on_long, optimization_budget=0.05, num_samples=12, progress=False,
                    space={"model": "fake-chat", "prompt": PROMPTS, "max_tokens": randint(4, 30)})
    t = Tuner(spec, session.requester, session.seed)
    best, _ = t.run()
    assert any(math.isnan(r.metrics.get("success", 0.0)) for r in t.trials if r.metrics)  # some came out NaN
    assert math.isfinite(t.best.metrics["success"])
