"""One config over many points, concurrently: money counted on failures, siblings stopped, identical requests
sent once, metrics aggregated by name."""
import pytest

from tests.support.helpers import PRICE, eval_func
from engine import Completion, ProviderError
from engine.requests.budget import BudgetGuard
from engine.evaluate.evaluator import Evaluator, aggregate

DATA = [{"question": f"What is {i} + {i}?", "answer": 2 * i} for i in range(1, 13)]


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
    # points already running when the error came back may finish; nothing starts after, nothing runs on
    assert fake_models.wait_idle()
    assert len(fake_models.requests) < 6
    assert guard.reserved == pytest.approx(0) and guard.paid == pytest.approx(
        fake_models.billed(PRICE["prompt"], PRICE["completion"]))


def test_identical_requests_in_flight_are_paid_once(fake_models):
    same = [DATA[0]] * 6
    result = Completion.test(same, {"model": "fake-chat", "prompt": "{question}", "max_tokens": 4}, eval_func,
                             concurrency=6)
    assert len(fake_models.requests) == 1 and result["success"] == 1.0 and result["cache_hits"] == 5


def test_named_aggregation_picks_the_metric_the_name_ends_with():
    per = [{"success": 1, "expected_success": 0.5}, {"success": 0, "expected_success": 0.25}]
    assert aggregate(per, {"avg_expected_success": lambda v: sum(v) / len(v)}) == {"avg_expected_success": 0.375}
