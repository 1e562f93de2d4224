"""Which config a tune ships: the cheapest of the equally good, on every path, with its uncertainty shown.

The landscape (fake_openai.landscape_responder) has many configs at success 1.0 whose cost grows with n and
max_tokens (answers are padded to max_tokens), so a tune that ships the first good config it found instead
of the cheapest one fails here. The 1-SE landscape has a best config better than a cheaper one by less than
one standard error."""
import json
import logging
import math
import re

import pytest
from flaml.tune import lograndint, randint, uniform

from tests.support.helpers import PRICE, eval_func
from engine import ChatCompletion, Completion
from engine.core.errors import ConfigError
from engine.core.records import TrialRecord
from engine.core.stats import bootstrap, estimate, paired_se, wilson
from engine.tuning import Tuner, TuneSpec
from engine.tuning.selection import Leader, choose
from tests.support.fake_openai import landscape_responder

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(1, 6) for b in range(1, 5)]  # 20
PROMPTS = ["{question}", "Think step by step. {question}"]
# right when sampled cold (temperature < 0.5, fake_openai.landscape_responder), answers padded to max_tokens: the
# first good config FLAML meets (temperature 0.2, max_tokens 24) costs 4x the cheapest one it finds later
LANDSCAPE = {"model": "fake-chat", "prompt": "{question}", "temperature": uniform(0, 2),
             "max_tokens": lograndint(4, 64), "n": randint(1, 4)}


# --- the numbers --------------------------------------------------------------------------------------------

def test_wilson_intervals_match_the_textbook_and_stay_inside_0_1():
    low, high = wilson(0.65, 20)
    assert (round(low, 3), round(high, 3)) == (0.433, 0.819)
    assert wilson(1.0, 20)[1] == 1.0 and round(wilson(1.0, 20)[0], 3) == 0.839
    assert wilson(0.0, 16)[0] == 0.0 and 0 < wilson(0.0, 16)[1] < 0.25


def test_a_0_1_metric_gets_wilson_and_any_other_a_seeded_bootstrap():
    three_of_16 = estimate([1] * 3 + [0] * 13)
    assert three_of_16.method == "wilson" and three_of_16.low < 0.1875 < three_of_16.high
    assert math.isclose(three_of_16.se, math.sqrt(0.1875 * 0.8125 * 16 / 15 / 16))
    graded = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8]
    first = estimate(graded)
    assert first.method == "bootstrap" and first.low < first.mean < first.high
    assert first == estimate(graded)  # the same interval in a rerun
    assert bootstrap([0.5] * 9) == (0.5, 0.5)
    assert estimate([]) is None and estimate([1]).se == 0.0


def test_pairing_cancels_how_hard_each_point_is():
    hard_easy = [0.0, 0.9] * 10
    slightly_better = [0.1, 1.0] * 10
    assert paired_se(slightly_better, hard_easy) < 1e-12  # better by the same amount on every point
    assert estimate(hard_easy).se > 0.1


# --- the rule, on records made by hand ----------------------------------------------------------------------

def trial(number, scores, cost, pruned=""):
    interval = estimate(scores)
    return TrialRecord(number=number, config={"n": number}, metrics={"success": interval.mean}, scores=scores,
                       interval=interval, inference_cost_usd_per_instance=cost, data_used=len(scores), pruned=pruned)


def test_cost_breaks_ties_among_complete_trials_only():
    trials = [trial(1, [1, 1, 0, 1], 3e-5), trial(2, [1, 0, 1, 1], 1e-5), trial(3, [1, 1, 1, 0], 2e-5),
              trial(4, [1, 1, 1, 1], 9e-6, pruned="cost"), trial(5, [0, 1, 0, 0], 1e-6)]
    choice = choose(trials, "success", "max", "best", total=4)
    assert choice.trial.number == 2 and [t.number for t in choice.equals] == [2, 3, 1]
    assert choice.reason == "cheapest of 3 complete trials at success 0.75; 4 complete in all"
    partial = TrialRecord(number=6, config={}, metrics={"success": 1.0}, scores=[1, 1], data_used=2,
                          inference_cost_usd_per_instance=1e-9)
    assert choose([partial], "success", "max", "best", total=4) is None  # never on fewer points


def test_for_a_metric_to_minimise_the_lowest_wins_and_cost_breaks_its_ties():
    trials = [trial(1, [0.2, 0.4], 2e-5), trial(2, [0.4, 0.2], 1e-5), trial(3, [0.5, 0.5], 1e-7)]
    assert choose(trials, "success", "min", "best", total=2).trial.number == 2


def test_the_leader_during_the_search_lets_ties_run_and_under_1se_lowers_the_bar_by_the_error():
    best = trial(1, [1, 1, 1, 0] * 5, 3e-5)
    leader = Leader("success", "max", "best", total=20)
    leader.offer(best)
    assert leader.bar == 0.75  # a trial that can still tie may still win on cost
    leader.offer(trial(2, [1, 1, 0, 1] * 5, 1e-5))
    assert leader.trial.number == 2  # as good and cheaper
    loose = Leader("success", "max", "1se", total=20)
    loose.offer(best)
    assert math.isclose(loose.bar, 0.75 - best.interval.se)
    with pytest.raises(ConfigError, match="selection rule 'cheapest'"):
        Leader("success", "max", "cheapest", total=20)


def test_the_1se_rule_takes_the_cheapest_within_the_tighter_of_the_two_errors():
    best = trial(1, [1] * 18 + [0, 0], 5e-5)  # 0.90 ± 0.069
    disagreeing = trial(2, [0, 0] + [1] * 15 + [0, 1, 1], 1e-5)  # 0.85: wrong elsewhere, paired se 0.11
    agreeing = trial(3, [1] * 17 + [0, 0, 0], 2e-6)  # 0.85 wrong on best's points and one more: paired se 0.05
    choice = choose([best, disagreeing, agreeing], "success", "max", "1se", total=20)
    assert choice.trial.number == 3  # within min(0.069, 0.05) of the best: the gap is 0.05
    assert "within 1 SE of the best success 0.9" in choice.reason
    worse = trial(4, [1] * 16 + [0] * 4, 1e-7)  # 0.80: more than one error below
    assert choose([best, worse], "success", "max", "1se", total=20).trial.number == 1
    assert choose([best, disagreeing, agreeing], "success", "max", "best", total=20).trial.number == 1


# --- end to end on the loopback landscape --------------------------------------------------------------------

def logged(path):
    return [json.loads(line) for line in open(path)]


def cheapest_of_the_best(trials, metric="success"):
    complete = [t for t in trials if not t["pruned"] and t["data_used"] == len(DATA)]
    top = max(t["metrics"][metric] for t in complete)
    return min(t["inference_cost_usd_per_instance"] for t in complete if t["metrics"][metric] == top), top, complete


def assert_cheapest_of_the_best(tuner, log):
    trials = logged(log)
    cheapest, top, complete = cheapest_of_the_best(trials)
    assert sum(t["metrics"]["success"] == top for t in complete) >= 3  # a landscape with many equal configs
    first = min((t for t in complete if t["metrics"]["success"] == top), key=lambda t: t["trial"])
    assert first["inference_cost_usd_per_instance"] > cheapest * 1.5  # shipping the first good one would fail
    chosen = tuner.best
    assert chosen.metrics["success"] == top
    assert chosen.inference_cost_usd_per_instance <= cheapest * 1.10
    assert {"success_se", "success_ci_low", "success_ci_high"} <= set(trials[0]["metrics"])
    assert all(len(t["scores"]) == len(DATA) for t in complete)


@pytest.mark.parametrize("trials", [1, 4], ids=["one-at-a-time", "in-flight-together"])
def test_the_tune_ships_the_cheapest_of_the_equally_good(landscape, session, tmp_path, trials):
    log = tmp_path / "trials.jsonl"
    spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=0.2, num_samples=40, trials=trials,
                    progress=False, log_file_name=str(log), space=LANDSCAPE)
    tuner = Tuner(spec, session.requester.for_run(), session.seed)
    best, _ = tuner.run()
    assert_cheapest_of_the_best(tuner, log)
    assert best == tuner.best.config
    assert tuner.choice.reason.startswith("cheapest of ")

    sent = len(landscape.requests)  # a rerun from the cache makes the same choice for $0
    again = Tuner(TuneSpec(DATA, "success", "max", eval_func, optimization_budget=0.2, num_samples=40,
                           trials=trials, progress=False, space=LANDSCAPE),
                  session.requester.for_run(), session.seed)
    assert again.run()[0] == best and len(landscape.requests) == sent and again.guard.paid == 0


def test_the_seed_api_tune_ships_the_cheapest_and_takes_the_rule(landscape, tmp_path):
    log = tmp_path / "trials.jsonl"
    best, _ = ChatCompletion.tune(DATA, "success", "max", eval_func, optimization_budget=0.2, num_samples=40,
                                  log_file_name=str(log), logging_level=logging.ERROR, **LANDSCAPE)
    cheapest, top, _ = cheapest_of_the_best(logged(log))
    chosen = [t for t in logged(log) if t["config"] == best][0]
    assert chosen["metrics"]["success"] == top and chosen["inference_cost_usd_per_instance"] <= cheapest * 1.10
    with pytest.raises(ConfigError, match="selection rule"):
        Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.01, selection="median",
                        model="fake-chat")


def one_se_responder(body, choice):
    """The step-by-step prompt is right on 18 of 20 points and says more (dearer); the plain one on 17, wrong
    on other points: better by 0.05, within one standard error (0.069)."""
    text = body["messages"][-1]["content"]
    a, b = map(int, re.search(r"(\d+) \+ (\d+)", text).groups())
    point = (a - 1) * 4 + (b - 1)
    wrong = {0, 1} if "step by step" in text else {2, 3, 4}
    answer = a + b + (1 if point in wrong else 0)
    return f"{answer} " + " ".join(["since"] * (30 if "step by step" in text else 2))


@pytest.mark.parametrize("rule,shipped", [("best", PROMPTS[1]), ("1se", PROMPTS[0])])
def test_the_1se_rule_ships_the_cheaper_config_when_the_best_is_better_by_less_than_the_noise(
        fake_models, session, rule, shipped):
    fake_models.responder = one_se_responder
    spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=0.1, num_samples=4, progress=False,
                    selection=rule, space={"model": "fake-chat", "prompt": PROMPTS, "max_tokens": 32, "n": 1,
                                           "temperature": 0})
    tuner = Tuner(spec, session.requester.for_run(), session.seed)
    best, _ = tuner.run()
    assert best["prompt"] == shipped
    costs = {t.config["prompt"]: t.inference_cost_usd_per_instance for t in tuner.trials if not t.pruned}
    if rule == "1se":
        assert costs[PROMPTS[0]] < costs[PROMPTS[1]] and "within 1 SE of the best success 0.9" in tuner.choice.reason
        assert math.isclose(tuner.best.metrics["success"], 0.85)


def test_a_bad_rule_is_refused_before_anything_is_spent(fake_models):
    with pytest.raises(ConfigError, match="selection rule"):
        TuneSpec(DATA, "success", "max", eval_func, selection="lowest")
    assert not fake_models.requests


def test_trials_on_ray_ship_the_same_cheapest_of_the_equally_good(landscape, session, tmp_path):
    ray = pytest.importorskip("ray")
    from engine.tuning.spec import RaySettings

    log = tmp_path / "trials.jsonl"
    spec = TuneSpec(DATA, "success", "max", eval_func, optimization_budget=0.4, num_samples=60, progress=False,
                    log_file_name=str(log), ray=RaySettings(workers=2), space=LANDSCAPE)
    try:
        tuner = Tuner(spec, session.requester.for_run(), session.seed)
        tuner.run()
    finally:
        ray.shutdown()
    assert tuner._remote.workers_seen  # the trials ran in Ray workers, and their per-point results came back
    assert_cheapest_of_the_best(tuner, log)
    assert 0 < landscape.billed(PRICE["prompt"], PRICE["completion"]) <= 0.4


def test_the_summary_says_in_one_line_when_the_tuned_result_did_not_carry_over():
    from engine.core.records import Summary
    from engine.mlflow.tracking import summary_line

    tuned = estimate([1] * 15 + [0])  # 0.94 [0.72, 0.99]
    summary = Summary(task="t", model="m", metric="success", tune_metric=tuned.mean, tune_interval=tuned,
                      test_metric=0.05, test_interval=estimate([1] + [0] * 19), selection="best",
                      reason="cheapest of 3 complete trials at success 0.9375", budget=0.01)
    table = [" ".join(line.split()) for line in summary.table().splitlines()]  # columns aligned: spaces vary
    assert "carried over? no: the tuned result did not carry over (test 95% CI [0.009, 0.236] lies wholly " \
           "below tune [0.717, 0.989])" in table
    assert "success on tune 0.938 ± 0.062, 95% CI [0.717, 0.989], 16 points" in table
    assert "chosen by rule best cheapest of 3 complete trials at success 0.9375" in table
    assert "The tuned result did not carry over" in summary_line(summary)
    assert summary.as_dict()["carried_over"] is False
    summary.test_interval = estimate([1] * 12 + [0] * 8)
    assert "carried over?" not in summary.table() and summary.as_dict()["carried_over"] is True


def test_every_interval_holds_its_own_mean_even_at_0_and_n_of_n():
    for n in range(1, 120):
        for k in (0, 1, n - 1, n):
            interval = estimate([1] * k + [0] * (n - k))
            assert interval.low <= interval.mean <= interval.high


# --- agg_method: the selection, the intervals and the pruning of another aggregate than the mean ------------------

def test_an_aggregate_gets_its_own_interval_and_paired_error():
    from engine.core.stats import aggregation
    scores = [1.0, 0.0, 1.0, 1.0, 0.5, 0.25, 1.0, 1.0]
    worst = estimate(scores, aggregation("min", "score"))
    assert (worst.mean, worst.low, worst.statistic) == (0.0, 0.0, "min") and worst.high > 0  # starts at the worst
    assert worst.text().startswith("min 0.000 ± ")
    median = estimate(scores, aggregation("median", "score"))
    assert median.mean == 1.0 and median.low <= 1.0 <= median.high and median.method == "bootstrap"
    assert median == estimate(scores, aggregation("median", "score"))  # seeded: a rerun shows the same
    # a callable computing the same figure gets the same resamples, hence the same interval
    custom = estimate(scores, aggregation(lambda v: sorted(v)[0], "score"))
    assert (custom.se, custom.low, custom.high, custom.statistic) == (worst.se, worst.low, worst.high, "custom")
    shifted = [s - 0.25 for s in scores]  # worse by the same amount on every point: no noise in the difference
    assert paired_se(scores, shifted, aggregation("min", "score")) == 0.0
    assert estimate(scores, aggregation("avg", "score")) == estimate(scores)  # avg is the mean's interval


def test_metric_pruning_follows_the_aggregate():
    from engine.core.stats import aggregation
    from engine.tuning.pruning import cannot_beat
    mean, median, worst = (aggregation(a, "s") for a in ("avg", "median", "min"))
    zeros = [0, 0, 0, 0, 0, 0, 0, 0]  # 8 of 20 points wrong so far
    assert not cannot_beat(zeros, 20, 0.6, "max", mean)  # 12/20 = 0.6 can still tie
    assert cannot_beat(zeros, 20, 0.61, "max", mean)
    assert cannot_beat(zeros + [0, 0], 20, 0.6, "max", median)  # the median is 0.5 at best now
    assert not cannot_beat(zeros, 20, 0.6, "max", median)  # 12 ones left: median 1
    # a min can only fall: any metric, not only 0/1
    assert cannot_beat([0.9, 0.4], 20, 0.5, "max", worst) and not cannot_beat([0.9, 0.6], 20, 0.5, "max", worst)
    # a callable promises nothing: no metric pruning
    assert not cannot_beat([0.0] * 19, 20, 0.9, "max", aggregation(lambda v: min(v), "s"))


def test_a_bad_agg_method_is_refused_before_anything_is_spent(fake_models):
    with pytest.raises(ConfigError, match="agg_method 'mode'"):
        TuneSpec(DATA, "success", "max", eval_func, agg_method="mode")
    with pytest.raises(ConfigError, match="without the tuned metric"):
        TuneSpec(DATA, "success", "max", eval_func, agg_method={"success_rate": min})
    assert not fake_models.requests


def test_tune_agg_method_in_the_config_aggregates_tune_and_test(tmp_path, session, monkeypatch):
    from engine.core.config import to_run_config
    from engine.runner import run_experiment
    from tests.support.fake_openai import FakeOpenAI
    from tests.support.helpers import composed

    def run_config(url, *overrides):
        return to_run_config(composed(
            "model=gpt-4o-mini", f"model.base_url={url}", "task.tune_size=6", "task.test_size=4",
            "budget.optimization=0.01", "budget.num_samples=2", "search=greedy", "progress=false",
            "tracking.enabled=false", f"cache.path={tmp_path}/cache", *overrides))

    assert run_config("http://x/v1").tune.agg_method == "avg"
    assert run_config("http://x/v1", "tune.agg_method={success:median}").tune.agg_method == {"success": "median"}
    with pytest.raises(ConfigError, match="tune.agg_method"):
        run_config("http://x/v1", "tune.agg_method=mode")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-agg-0123456789")
    with FakeOpenAI() as fake:
        summary = run_experiment(run_config(fake.base_url, "tune.agg_method=min"), str(tmp_path / "out"), session)
    assert summary.tune_interval.statistic == "min" and summary.test_interval.statistic == "min"
    assert summary.tune_metric == summary.tune_interval.mean and summary.test_metric == summary.test_interval.mean
