"""Promotion that cannot silently break production: a version's input schema, the refusals (fields changed,
metric worse) and `force`, an alias followed by a long-running process, MLFLOW_TRACKING_URI honoured, and
the served model answering rows concurrently with a one-line 400 for bad input."""
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import engine.mlflow.registry as promotion
from tests.support.helpers import composed
from engine.core.config import to_run_config
from engine.core.errors import ConfigError
from engine.mlflow.registry import load_config, promote
from engine.mlflow.serving import ConfigModel, ServingLimits, pip_requirements
from engine.mlflow.tracking import Tracker

QUESTION = {"model": "smollm2", "prompt": "Answer with a number. {question}", "max_tokens": 8}
OPERANDS = {"model": "smollm2", "prompt": "What is {a} {op} {b}?", "max_tokens": 8}


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return {"uri": uri, "client": MlflowClient(uri, uri), "dir": tmp_path}


def finished(store, config, success):
    """A finished tune run as engine.tune leaves it: best config, metric tags, test metric."""
    tracker = Tracker(store["uri"], "arithmetic", (store["dir"] / "artifacts").as_uri())
    tracker.start({}, {"task": "arithmetic", "registered_model": "arith", "metric": "success", "mode": "max"})
    tracker.finish(config, {"test_success": success, "tune_success": success}, [], "success", "max")
    return tracker.run_id


def holder(store, alias="production"):
    return str(store["client"].get_model_version_by_alias("arith", alias).version)


def test_a_version_carries_the_fields_its_prompt_needs_as_its_input_schema(store):
    from mlflow.models import Model

    version = promote(finished(store, OPERANDS, 0.5), uri=store["uri"])
    assert version.tags["input_fields"] == "a,b,op"
    model = Model.load(store["client"].download_artifacts(version.run_id, "model", str(store["dir"])))
    assert model.signature.inputs.input_names() == ["a", "b", "op"]


def test_the_registered_model_holds_no_code_its_loader_is_the_installed_engine(store, monkeypatch):
    import mlflow.pyfunc
    from mlflow.models import Model

    version = promote(finished(store, OPERANDS, 0.5), uri=store["uri"])
    local = Path(store["client"].download_artifacts(version.run_id, "model", str(store["dir"])))
    assert not [p for p in local.rglob("*") if p.suffix in (".py", ".pkl", ".pyc")]  # data, not code
    flavor = Model.load(str(local)).flavors["python_function"]
    assert flavor["loader_module"] == "engine.mlflow.serving"
    assert flavor["config"] == ServingLimits().as_model_config()  # the bounds on one request, saved
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    loaded = mlflow.pyfunc.load_model("models:/arith@production")
    assert isinstance(loaded._model_impl, ConfigModel) and loaded._model_impl.config == OPERANDS


def test_a_promotion_that_changes_the_fields_is_refused_unless_forced(store):
    promote(finished(store, OPERANDS, 0.5), uri=store["uri"])
    question = finished(store, QUESTION, 0.9)
    with pytest.raises(ConfigError) as refused:
        promote(question, uri=store["uri"])
    message = str(refused.value)
    assert "needs question" in message and "no longer takes a, b, op" in message and "force=true" in message
    assert holder(store) == "1" and len(store["client"].search_model_versions("name='arith'")) == 1
    promote(question, alias="staging", uri=store["uri"])  # another alias: nobody calls it with a, op, b yet
    assert holder(store, "staging") == "2" and holder(store) == "1"
    assert promote(question, uri=store["uri"], force=True).tags["promotion.forced"] == "true"
    assert holder(store) == "2"  # the run's version already exists: the alias moves to it, no duplicate
    assert len(store["client"].search_model_versions("name='arith'")) == 2


def test_a_promotion_with_a_worse_test_metric_is_refused_unless_forced_showing_both(store):
    promote(finished(store, OPERANDS, 0.8), uri=store["uri"])
    worse = finished(store, {**OPERANDS, "max_tokens": 4}, 0.55)
    with pytest.raises(ConfigError, match=r"test success 0\.55 is worse than 0\.8 of arith@production"):
        promote(worse, uri=store["uri"])
    assert holder(store) == "1"
    promote(finished(store, {**OPERANDS, "max_tokens": 6}, 0.8), uri=store["uri"])  # as good: moves
    assert holder(store) == "2"
    promote(worse, uri=store["uri"], force=True)
    assert holder(store) == "3"


def finished_with_interval(store, config, successes, points=20, cost_1k=0.01):
    """A finished tune whose test metric carries its standard error and interval, as engine.tune logs it."""
    from engine.core.stats import estimate

    interval = estimate([1] * successes + [0] * (points - successes))
    tracker = Tracker(store["uri"], "arithmetic", (store["dir"] / "artifacts").as_uri())
    tracker.start({}, {"task": "arithmetic", "registered_model": "arith", "metric": "success", "mode": "max"})
    tracker.finish(config, {"test_success": interval.mean, **{f"test_{k}": v for k, v in
                                                             interval.as_metrics("success").items()},
                            "test_inference_cost_usd_per_1k_instances": cost_1k}, [], "success", "max")
    return tracker.run_id


def test_a_lower_test_metric_within_noise_moves_the_alias_and_says_so_beyond_noise_is_refused(store):
    promote(finished_with_interval(store, OPERANDS, 13, cost_1k=0.02), uri=store["uri"])  # 0.65 ± 0.109
    cheaper = promote(finished_with_interval(store, {**OPERANDS, "max_tokens": 4}, 12, cost_1k=0.01),
                      uri=store["uri"])  # 0.60: lower by 0.05, the difference's standard error is 0.155
    assert holder(store) == str(cheaper.version)
    note = cheaper.tags["promotion.comparison"]
    assert note.startswith("within noise: success lower by 0.05") and "$0.0100 vs $0.0200 per 1K" in note
    assert "0.600 [0.387, 0.781] vs 0.650 [0.433, 0.819]" in note
    with pytest.raises(ConfigError, match=r"test success 0\.25 is worse than 0\.6 of arith@production \(version 2\), "
                                          r"beyond noise .*\$0\.0050 vs \$0\.0100 per 1K instances"):
        promote(finished_with_interval(store, {**OPERANDS, "max_tokens": 5}, 5, cost_1k=0.005), uri=store["uri"])
    assert holder(store) == "2"


def test_a_long_running_process_sees_the_alias_move(store, monkeypatch):
    promote(finished(store, OPERANDS, 0.5), uri=store["uri"])
    uri = "models:/arith@production"
    assert load_config(uri, store["uri"])["max_tokens"] == 8
    promote(finished(store, {**OPERANDS, "max_tokens": 5}, 0.6), uri=store["uri"])
    assert load_config(uri, store["uri"])["max_tokens"] == 8  # within the time-to-live: the version seen
    monkeypatch.setattr(promotion, "ALIAS_TTL_S", 0.0)
    assert load_config(uri, store["uri"])["max_tokens"] == 5


def test_mlflow_tracking_uri_is_honoured_by_promote_and_tune_without_tracking_uri(store, monkeypatch, tmp_path):
    run_id = finished(store, OPERANDS, 0.5)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = subprocess.run([sys.executable, "-m", "engine.promote"], capture_output=True, text=True, cwd=cwd,
                         env={**__import__("os").environ, "MLFLOW_TRACKING_URI": store["uri"]}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"from run {run_id}" in out.stdout and "fields a,b,op" in out.stdout
    assert not list(cwd.iterdir()), "promote made a store of its own"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team:5000")
    assert to_run_config(composed()).tracking.uri == "http://mlflow.team:5000"
    assert to_run_config(composed("tracking.uri=sqlite:///x.db")).tracking.uri == "sqlite:///x.db"


def served(session, config, **limits):
    return ConfigModel(config, session, ServingLimits(**limits))


def test_the_served_model_answers_rows_concurrently(fake_models, session):
    fake_models.latency = 0.3
    model = served(session, {"model": "fake-chat", "prompt": "What is {a} + {b}?", "max_tokens": 8})
    out = model.predict(pd.DataFrame([{"a": i, "b": 1} for i in range(4)]))
    assert fake_models.most_in_flight > 1  # rows at once, seen by the server
    assert [c.split()[0] for c in out["completion"]] == ["1", "2", "3", "4"]  # in order


def test_a_served_request_is_bounded_before_any_row_is_paid(fake_models, session):
    model = served(session, {"model": "fake-chat", "prompt": "Say {a}", "max_tokens": 8}, max_rows=100,
                   max_prompt_bytes=4096)
    with pytest.raises(MlflowException, match=r"^5,000 rows|^5000 rows in one request, above this model's limit of 100"):
        model.predict(pd.DataFrame([{"a": i} for i in range(5000)]))
    with pytest.raises(MlflowException, match=r"row 1: its prompt is 10,000,004 bytes \(worst case \$[0-9.]+ with "
                                              r"this config\), above this model's limit of 4,096 bytes") as big:
        model.predict(pd.DataFrame([{"a": "small"}, {"a": "x" * 10_000_000}]))
    assert big.value.get_http_status_code() == 400
    assert not fake_models.requests  # both refused before a request


def test_rows_past_the_deadline_are_not_sent_for_a_client_that_stopped_waiting(fake_models, session):
    fake_models.latency = 0.4
    model = served(session, {"model": "fake-chat", "prompt": "Say {a}", "max_tokens": 8}, deadline_s=0.2)
    with pytest.raises(MlflowException, match=r"deadline \(0.2 s.*passed after \d+ of 64 rows; the others were "
                                              "not sent"):
        model.predict(pd.DataFrame([{"a": i} for i in range(64)]))
    assert fake_models.wait_idle()
    assert len(fake_models.requests) <= 16  # the first rows in flight; none started after the deadline


def test_serving_limits_come_from_the_models_config_and_can_be_overridden():
    assert ServingLimits.from_model_config({"max_rows": 3}).max_rows == 3
    assert ServingLimits.from_model_config(None) == ServingLimits()
    assert ServingLimits.from_model_config({"deadline_s": 2}).deadline() == 2
    with pytest.raises(ConfigError, match="max_rows must be a positive integer"):
        ServingLimits.from_model_config({"max_rows": 0})


def test_a_bad_row_is_a_one_line_client_error(fake_models, session):
    model = served(session, {"model": "fake-chat", "prompt": "What is {a} + {b}?", "max_tokens": 8})
    with pytest.raises(MlflowException) as bad:
        model.predict(pd.DataFrame([{"a": 1, "b": 2}, {"question": "What is 1 + 1?"}]))
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE" and bad.value.get_http_status_code() == 400
    assert str(bad.value.message) == "row 1: missing field(s) a, b; this config's prompt needs a, b"
    assert not fake_models.requests  # refused before any request
    with pytest.raises(MlflowException, match="no rows with the fields this config's prompt needs: a, b"):
        model.predict(pd.DataFrame())


def test_the_models_requirements_include_the_engine_itself():
    assert pip_requirements()[0].startswith("engine")


@pytest.mark.parametrize("alias", ["v1", "latest", "../x", "1st", ""])
def test_an_alias_mlflow_would_refuse_is_refused_before_a_version_is_registered(store, alias):
    run_id = finished(store, OPERANDS, 0.5)
    with pytest.raises(ConfigError, match="an alias is a name like production"):
        promote(run_id, alias=alias, uri=store["uri"])
    assert not store["client"].search_model_versions("name='arith'")


def test_a_missing_run_is_a_one_line_error(store):
    finished(store, OPERANDS, 0.5)
    with pytest.raises(ConfigError, match="run_id=0123abcd: no such run in sqlite:///"):
        promote("0123abcd", uri=store["uri"])


CHAT = {"model": "smollm2", "messages": [{"role": "system", "content": "Answer {{briefly}}."},
                                         {"role": "user", "content": "{question}"}], "n": 3, "stop": "\n",
        "temperature": 0.7}


def test_the_winner_is_a_prompt_version_with_its_model_config_and_the_alias_moves_there_too(store):
    """MLflow 3's Prompt Registry: the template in MLflow's {{var}} form, the sampling settings as model_config,
    a commit message naming the run and its figures; prompts:/ loads back exactly the config."""
    run_id = finished(store, OPERANDS, 0.5)
    version = promote(run_id, uri=store["uri"])
    client = store["client"]
    prompt = client.load_prompt("prompts:/arith-prompt@production")
    assert version.tags["prompt"] == f"prompts:/arith-prompt/{prompt.version}"
    assert prompt.template == "What is {{a}} {{op}} {{b}}?" and prompt.variables == {"a", "op", "b"}
    assert prompt.model_config["model_name"] == "smollm2" and prompt.model_config["max_tokens"] == 8
    assert prompt.commit_message.startswith(f"tune run {run_id}: test success 0.5")
    assert load_config("prompts:/arith-prompt@production", store["uri"]) == OPERANDS
    assert "Config: " in version.description and "test success" in version.description
    assert not any(k.startswith("metric.tune_") for k in version.tags)  # the few figures that matter, no tag wall
    chat = promote(finished(store, CHAT, 0.6), alias="chat", uri=store["uri"], force=True)
    loaded = client.load_prompt("prompts:/arith-prompt@chat")
    assert loaded.template[1]["content"] == "{{question}}" and loaded.template[0]["content"] == "Answer {briefly}."
    assert load_config("prompts:/arith-prompt@chat", store["uri"]) == CHAT and chat.tags["prompt"].endswith("/2")


def test_templates_translate_to_mlflows_format_and_back_exactly():
    from engine.mlflow.prompts import as_config, as_prompt, from_mlflow, to_mlflow

    for template in ("What is {a} {op} {b}?", "{{literal}} and {x}", "no fields", "JSON: {{\"k\": {v}}}"):
        assert from_mlflow(to_mlflow(template)) == template
    assert to_mlflow("{x:>5}") is None and to_mlflow("{x.attr}") is None and to_mlflow(lambda c: "") is None
    assert as_prompt({"model": "m", "prompt": "{x!r}"}) is None  # kept as a model version only
    config = {"model": "m", "prompt": "Q: {q}", "stop": ["\n", "Q:"], "top_p": 0.5, "n": 2, "max_tokens": 9}
    assert as_config(*as_prompt(config)) == config
