"""The worst-case bound that budget reservations rest on."""
import pytest

from engine.budget import worst_case_cost
from engine.models import ModelSpec


def test_worst_case_counts_best_of_and_tool_definitions():
    spec = ModelSpec(name="m", price_per_1k={"prompt": 1.0, "completion": 1.0})
    base = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    plain = worst_case_cost(spec, base)
    assert worst_case_cost(spec, {**base, "best_of": 3}) == pytest.approx(plain + 20 / 1000)
    tools = [{"type": "function", "function": {"name": "lookup", "description": "x" * 500}}]
    assert worst_case_cost(spec, {**base, "tools": tools}) > plain + 0.5
