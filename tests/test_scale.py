"""What a tune keeps per trial stays small: FLAML's trial records drop their moving-window deques (one result
per trial makes them a copy of the result, ~40 KB a trial), and its analysis still answers."""
import logging

from tests.support.helpers import eval_func
from engine import Completion

DATA = [{"question": f"What is {i} + {i}?", "answer": 2 * i} for i in range(1, 5)]


def test_trials_keep_no_moving_window_of_their_one_result(fake_models):
    best, analysis = Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.05, num_samples=3,
                                     model="fake-chat", prompt="{question}", max_tokens=8,
                                     logging_level=logging.ERROR)
    trials = analysis.trials
    assert len(trials) == 3
    for trial in trials:
        assert trial.metric_n_steps == {}  # FLAML's deques: 2 per numeric field of the result
        assert trial.metric_analysis["success"]["last"] == trial.last_result["success"]
        assert trial.metric_analysis["cost_usd"]["last-5-avg"] == trial.last_result["cost_usd"]
    chosen = analysis.get_best_trial("success", "max", scope="last")
    assert chosen.last_result["success"] == max(t.last_result["success"] for t in trials)
    assert analysis.get_best_trial("cost_usd", "min", scope="last-5-avg") is not None
