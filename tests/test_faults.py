"""The budget is a hard cap whatever the provider does, checked against what the loopback fault server itself
billed: timeouts it still bills, answers above their bound, bad answers, processes racing on one cache, and
eval_funcs that would fail after money was spent."""
import contextlib
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from flaml.tune import randint

from conftest import DATA, PROMPTS, PRICE, eval_func
from engine import BudgetError, Completion, ConfigError, ProviderError
from engine.errors import BudgetOverrunError
from engine.tuning import Tuner, TuneSpec
from fake_openai import FakeOpenAI, landscape_responder



def tuner(session, budget, **space):
    spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=budget, num_samples=-1, progress=False,
                    space={"model": "fake-chat", "prompt": PROMPTS, "max_tokens": randint(4, 30), **space})
    return Tuner(spec, session.requester, session.seed)


def test_timeouts_the_server_still_bills_never_push_its_count_over_the_budget(landscape, session):
    """Every 4th request takes longer than the client waits, and the server finishes and bills it anyway."""
    landscape.fault_rule = lambda i: {"stall": 1.0} if i % 4 == 3 else None
    budget = 0.004
    t = tuner(session, budget, request_timeout=0.3, retry_wait_time=0.05, max_retry_period=20)
    with ends_cleanly():
        t.run()
    time.sleep(1.2)  # the stalled answers are still being made and billed server-side
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
    assert "paid so far $" in message and "conf/model/fake-chat.yaml" in message
    sent = len(landscape.requests)
    time.sleep(0.3)
    assert len(landscape.requests) == sent  # nothing is sent after it


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
    sys.path.insert(0, sys.argv[3])
    from conftest import eval_func, register_fake_models
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
    tests = str(Path(__file__).parent)
    with FakeOpenAI(latency=0.05, responder=landscape_responder) as fake:
        cmd = [sys.executable, "-c", RACER, fake.base_url, str(tmp_path / "cache"), tests]
        racers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
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
