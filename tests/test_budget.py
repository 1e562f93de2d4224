"""The worst-case bound that budget reservations rest on."""
import pytest

from engine.core.errors import BudgetError
from engine.requests.budget import BudgetGuard, worst_case_cost, worst_case_tokens
from engine.core.models import ModelSpec


def test_worst_case_counts_best_of_and_tool_definitions():
    spec = ModelSpec(name="m", price_per_1k={"prompt": 1.0, "completion": 1.0})
    base = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    plain = worst_case_cost(spec, base)
    per_choice = 10 + spec.completion_margin_tokens
    assert worst_case_cost(spec, {**base, "best_of": 3}) == pytest.approx(plain + 2 * per_choice / 1000)
    tools = [{"type": "function", "function": {"name": "lookup", "description": "x" * 500}}]
    assert worst_case_cost(spec, {**base, "tools": tools}) > plain + 0.5


def test_each_choice_may_run_past_max_tokens_by_the_models_margin():
    """llama.cpp returns 9 or 10 completion tokens for max_tokens=8 on CJK or emoji output."""
    spec = ModelSpec(name="m", completion_margin_tokens=3)
    bound = worst_case_tokens(spec, {"prompt": "写一首诗", "max_tokens": 8, "n": 2})
    assert bound.completion == 2 * (8 + 3) and bound.prompt == len("写一首诗".encode()) + spec.prompt_overhead_tokens


def test_an_unanswered_attempt_stays_counted_and_a_retry_needs_room():
    guard = BudgetGuard(1.0)
    assert guard.admit([0.4]) == 1
    assert guard.unanswered_attempt(0.4)  # charged 0 + unanswered 0.4 + reserved 0.4 <= 1: a retry fits
    assert not guard.unanswered_attempt(0.4)  # 0.8 + 0.4 > 1: no room for a third attempt
    guard.settle(0.4, 0.1, 0.1)
    assert guard.unanswered == pytest.approx(0.8) and guard.unanswered_requests == 2
    assert guard.admit([0.15]) == 0 and guard.admit([0.1]) == 1  # the unanswered worst cases still count


def test_a_free_model_gets_a_zero_allowance_per_trial_not_an_error():
    """A model priced at $0 (a local server): each trial's worst case is $0, and that is an allowance too."""
    guard = BudgetGuard(0.0)
    assert guard.admit([0.0, 0.0]) == 2 and guard.admit([0.001]) == 0
    with pytest.raises(BudgetError):
        BudgetGuard(-1.0)
