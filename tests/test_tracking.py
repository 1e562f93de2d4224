"""MLflow against a real store in a temp dir: runs, children, artifacts, failure states, promotion,
loading by alias, serving, and no key anywhere."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.support.helpers import composed, free_port, logged_trials, wait_until
from engine import Completion, load_config
from engine.core.config import to_run_config
from engine.mlflow.registry import promote
from engine.runner import run_experiment
from engine.tasks import TASKS, Task, success_eval_func
from engine.tasks.metrics import numeric_match
from engine.mlflow.tracking import Tracker
from tests.support.fake_openai import FakeOpenAI

SECRET = "sk-test-TRACKING-SECRET-0123456789"


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return {"uri": uri, "artifacts": str(tmp_path / "artifacts"), "client": MlflowClient(uri, uri), "dir": tmp_path}


def run_config(store, fake_url, *overrides):
    return to_run_config(composed(
        "model=gpt-4o-mini", f"model.base_url={fake_url}", "task.tune_size=6", "task.test_size=4",
        "budget.optimization=0.01", "budget.num_samples=3", "search=greedy", "progress=false",
        f"tracking.uri={store['uri']}", f"tracking.artifacts={store['artifacts']}",
        f"cache.path={store['dir']}/cache", *overrides))


def test_a_tune_is_one_parent_run_with_a_child_per_trial(store, monkeypatch, session):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAI() as fake:
        summary = run_experiment(run_config(store, fake.base_url), str(store["dir"] / "out"), session,
                                 sweep="/abs/multirun/2026-11-26_17-00-00", label="budget.optimization=0.01")
    client = store["client"]
    experiment = client.get_experiment_by_name("arithmetic")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("engine.kind") == "tune"]
    children = [r for r in runs if r.data.tags.get("engine.kind") == "trial"]
    assert len(parents) == 1 and len(children) == summary.trials == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED" and summary.mlflow_run == parent.info.run_id
    assert parent.info.run_name == "budget.optimization=0.01 · arithmetic · gpt-4o-mini"  # what differs first
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.data.tags["task"] == "arithmetic" and parent.data.tags["model"] == "gpt-4o-mini"
    assert parent.data.tags["sweep"] == "/abs/multirun/2026-11-26_17-00-00"
    assert parent.data.params["budget.optimization"] == "0.01"
    assert parent.data.metrics["test_success"] == 1.0 and "tune_success" in parent.data.metrics
    assert {"paid_usd", "saved_by_cache_usd", "test_inference_cost_usd_per_instance", "test_paid_usd",
            "test_inference_cost_usd_per_1k_instances"} <= set(parent.data.metrics)
    assert parent.data.metrics["test_inference_cost_usd_per_1k_instances"] == pytest.approx(
        1000 * parent.data.metrics["test_inference_cost_usd_per_instance"])
    assert not {"dollars_paid", "dollars_saved", "test_inference_cost", "test_spent"} & set(parent.data.metrics)
    contexts = {i.tags[0].value: i.dataset for i in parent.inputs.dataset_inputs}
    assert set(contexts) == {"tune", "test"} and contexts["tune"].digest
    child = children[0]
    assert {"cost_usd", "paid_usd", "saved_by_cache_usd", "inference_cost_usd_per_instance",
            "inference_cost_usd_per_1k_instances", "prompt_tokens", "completion_tokens",
            "wall_time_s", "cache_hits", "pruned", "data_used", "success"} <= set(child.data.metrics)
    assert child.data.params["model"] == "gpt-4o-mini" and "prompt" in child.data.params
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.json", "best_config.yaml", "cost_vs_metric.png", "trials.jsonl",
            "search_space.yaml"} <= artifacts
    png = client.download_artifacts(parent.info.run_id, "cost_vs_metric.png", str(store["dir"]))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    blobs = b"".join(p.read_bytes() for p in store["dir"].rglob("*") if p.is_file())
    assert SECRET.encode() not in blobs and b"TRACKING-SECRET" not in blobs


def _tune_runs(store, monkeypatch, session, *overrides):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAI(latency=0.05) as fake:
        summary = run_experiment(run_config(store, fake.base_url, *overrides), str(store["dir"] / "out"), session)
    runs = store["client"].search_runs([store["client"].get_experiment_by_name("arithmetic").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("engine.kind") == "tune")
    children = [r for r in runs if r.data.tags.get("engine.kind") == "trial"]
    trials = [json.loads(line) for line in (store["dir"] / "out" / "trials.jsonl").read_text().splitlines()]
    return summary, parent, children, trials


def test_trials_are_named_by_their_config_and_span_their_real_time(store, monkeypatch, session):
    _, parent, children, trials = _tune_runs(store, monkeypatch, session, "search.n=[randint,1,3]",
                                             "search.max_tokens=[lograndint,8,64]")
    assert parent.info.run_name == "arithmetic · gpt-4o-mini"  # no overrides given: task and model
    kind = store["client"].get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"  # the UI opens on the runs table, not a GenAI overview
    by_number = {t["trial"]: t for t in trials}
    for child in children:
        number = int(child.info.run_name.split()[0].removeprefix("trial-"))
        config = by_number[number]["config"]
        assert child.info.run_name.startswith(f"trial-{number} n={config['n']} max_tokens={config['max_tokens']}")
        record = by_number[number]
        assert child.info.start_time == int(record["started_at"] * 1000)
        assert child.info.end_time == int(record["ended_at"] * 1000)
        assert child.info.end_time - child.info.start_time >= 40  # the fake server answers in 50 ms
    space = parent.data.params["search_space"]
    assert "max_tokens: lograndint(8, 64)" in space and "n: randint(1, 3)" in space and "object at" not in space
    local = store["client"].download_artifacts(parent.info.run_id, "search_space.yaml", str(store["dir"]))
    assert "lograndint(8, 64)" in open(local).read()


def test_the_best_trial_is_marked_linked_and_its_config_is_the_parents_params(store, monkeypatch, session):
    summary, parent, children, _ = _tune_runs(store, monkeypatch, session)
    best = [c for c in children if c.data.tags.get("best") == "true"]
    assert len(best) == 1 and parent.data.tags["best_run_id"] == best[0].info.run_id
    for key, value in summary.best_config.items():
        assert parent.data.params[f"best.{key}"] == str(value)
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("success 1.000 [0.510, 1.000] on test, ") and "(95% CIs)" in note
    assert "per 1K instances" in note and "3 trials" in note and "; chosen by rule best: " in note
    assert {"tune_success_ci_low", "tune_success_ci_high", "test_success_ci_low"} <= set(parent.data.metrics)
    assert {"success_se", "success_ci_low", "success_ci_high"} <= set(best[0].data.metrics)
    assert best[0].info.run_id in note and "\n" not in note and "; best trial: [trial-" in note


def test_a_run_carries_mlflows_standard_tags_and_the_engines_commit_from_any_folder(store, monkeypatch, session):
    monkeypatch.chdir(store["dir"])  # not a git checkout
    _, parent, children, _ = _tune_runs(store, monkeypatch, session)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.strip()
    tags = parent.data.tags
    assert tags["mlflow.source.git.commit"] == head and len(head) == 40
    assert tags["mlflow.user"] and tags["mlflow.source.name"]
    assert all(c.data.tags["mlflow.source.git.commit"] == head and c.data.tags["mlflow.user"] for c in children)


@pytest.mark.parametrize("error, status", [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_crashed_or_interrupted_tune_does_not_stay_running(store, monkeypatch, session, error, status):
    """...and every trial finished before the crash is logged (trials are written off the tune's thread)."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    calls = []

    def flaky(responses, **point):
        calls.append(1)
        if len(calls) > 10:  # a dry run, the first trial's 6 points, then part of the second's
            raise error("boom")
        return {"success": True}

    name = f"flaky-{status.lower()}"
    if name not in TASKS:
        TASKS.register(name)(lambda cfg: Task(name=name, points=[{"question": f"What is {i} + 1?", "answer": i + 1}
                                                                   for i in range(12)], eval_func=flaky,
                                              prompts=["{question}"]))
    with FakeOpenAI() as fake, pytest.raises(error):
        run_experiment(run_config(store, fake.base_url, f"task.name={name}", "parallel.trials=1"),
                       str(store["dir"] / "out"), session)
    experiment = store["client"].get_experiment_by_name(name)
    runs = store["client"].search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("engine.kind") == "tune"][0]
    assert parent.info.status == status
    children = [r for r in runs if r.data.tags.get("engine.kind") == "trial"]
    finished = logged_trials(store["dir"] / "out" / "trials.jsonl")
    assert len(finished) >= 1 and sorted(int(c.info.run_name.split()[0].removeprefix("trial-")) for c in children) \
        == sorted(t["trial"] for t in finished)
    assert all(c.info.status == "FINISHED" and "success" in c.data.metrics for c in children)
    assert parent.data.tags["error"].startswith(error.__name__)  # the message, as a tag and as a text artifact
    local = store["client"].download_artifacts(parent.info.run_id, "error.txt", str(store["dir"]))
    assert "Traceback" in open(local).read()
    if status == "FAILED":
        assert parent.data.tags["error"] == "RuntimeError: boom" and "boom" in parent.data.tags["mlflow.note.content"]


HALF = "half-right"


def _half_right(cfg):
    def thirds_fail(responses, **point):
        return {"success": point["answer"] % 3 != 0, "length": len(responses[0])}

    return Task(name=HALF, points=[{"question": f"What is {i} + 1?", "answer": i + 1} for i in range(20)],
                eval_func=thirds_fail, prompts=["{question}", "Q: {question}"])


@pytest.mark.parametrize("n", [1, 2])
def test_the_best_trial_and_the_test_are_logged_item_by_item_and_failures_filter(store, monkeypatch, session, n):
    import pandas as pd

    if HALF not in TASKS:
        TASKS.register(HALF)(_half_right)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAI() as fake:
        summary = run_experiment(run_config(store, fake.base_url, f"task.name={HALF}", f"search.n={n}"),
                                 str(store["dir"] / "out"), session)
    client = store["client"]
    run_id = summary.mlflow_run
    logged = json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "items/best_trial.json", "type": "table"} in logged
    assert {"path": "items/test.json", "type": "table"} in logged
    for path, size in (("items/best_trial.json", 6), ("items/test.json", 4)):
        table = json.loads(open(client.download_artifacts(run_id, path, str(store["dir"]))).read())
        frame = pd.DataFrame(table["data"], columns=table["columns"])
        assert len(frame) == size and list(frame["point"]) == list(range(size))  # one row per point
        assert {"question", "expected_answer", "success", "length", "cost_usd", "failed"} <= set(frame.columns)
        assert list(frame.columns)[:4] == ["point", "question", "answers" if n > 1 else "answer", "expected_answer"]
        answers = frame["answers"] if n > 1 else frame["answer"].map(lambda a: [a])
        assert all(len(a) == n and all(isinstance(t, str) and t for t in a) for a in answers)
        assert (frame["cost_usd"] > 0).all()
        failures = frame[frame["failed"]]  # what a team filters to
        assert len(failures) and (failures["expected_answer"] % 3 == 0).all() and not failures["success"].any()
        assert frame[~frame["failed"]]["success"].all()
        assert frame["question"].str.startswith("What is ").all()
    tested = json.loads(open(client.download_artifacts(run_id, "items/test.json", str(store["dir"]))).read())
    mean = sum(row[tested["columns"].index("success")] for row in tested["data"]) / len(tested["data"])
    assert mean == pytest.approx(summary.test_metric)  # the rows are the points the test metric averages


def _finished_run(store, config, task="arithmetic"):
    tracker = Tracker(store["uri"], task, (store["dir"] / "artifacts").as_uri())
    tracker.start({"note": "registered by a test"}, {"task": task, "registered_model": f"{task}-test"})
    tracker.finish(config, {"test_success": 0.5}, [], "success", "max")
    return tracker.run_id


def test_promotion_sets_the_alias_and_a_second_promotion_moves_it(store):
    first = _finished_run(store, {"model": "smollm2", "prompt": "{question}", "max_tokens": 4})
    second = _finished_run(store, {"model": "smollm2", "prompt": "Q: {question}", "max_tokens": 4})
    v1 = promote(first, None, "production", store["uri"])
    client = store["client"]
    assert v1.name == "arithmetic-test" and str(client.get_model_version_by_alias(v1.name, "production").version) == "1"
    v2 = promote(second, None, "production", store["uri"])
    assert str(client.get_model_version_by_alias(v1.name, "production").version) == str(v2.version) == "2"
    assert client.get_model_version(v1.name, "2").tags["source_run"] == second
    promote(first, None, "staging", store["uri"])
    assert load_config(f"models:/{v1.name}@staging", store["uri"])["prompt"] == "{question}"
    assert load_config(f"models:/{v1.name}@production", store["uri"])["prompt"] == "Q: {question}"


def test_the_promote_command_defaults_to_the_last_tune(store):
    run_id = _finished_run(store, {"model": "smollm2", "prompt": "{question}", "max_tokens": 4})
    out = subprocess.run([sys.executable, "-m", "engine.promote", f"tracking.uri={store['uri']}", "alias=staging"],
                         capture_output=True, text=True, cwd=store["dir"], timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"from run {run_id}" in out.stdout and "alias 'staging'" in out.stdout


@pytest.mark.embedded
def test_create_loads_a_registered_config_by_alias_and_answers_on_the_embedded_model(store, monkeypatch, cache_dir):
    run_id = _finished_run(store, {"model": "smollm2", "prompt": "Answer with a number. {question}",
                                   "max_tokens": 10, "temperature": 0})
    version = promote(run_id, "arith-embedded", "production", store["uri"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    r = Completion.create({"question": "What is 2 + 2?"}, config=f"models:/{version.name}@production")
    assert numeric_match(Completion.extract_text(r)[0], 4) and r["usage"]["completion_tokens"] <= 10  # "2 + 2 = 4"
    result = Completion.test([{"question": "What is 1 + 1?", "answer": 2}], f"models:/{version.name}@production",
                             eval_func=success_eval_func(numeric_match))
    assert result["success"] == 1.0 and result["cost"] > 0


@pytest.mark.embedded
def test_mlflow_models_serve_answers_with_the_registered_config(store):
    run_id = _finished_run(store, {"model": "smollm2", "prompt": "Answer in one word. {question}",
                                   "max_tokens": 8, "temperature": 0})
    version = promote(run_id, "served", "production", store["uri"])
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)  # mlflow runs uvicorn from the venv, as an activated shell would
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    mlflow_cli = os.path.join(bin_dir, "mlflow")
    server = subprocess.Popen([mlflow_cli, "models", "serve", "-m", f"models:/{version.name}@production",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                              cwd=store["dir"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def pings() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                return True
            except OSError:
                assert server.poll() is None, server.stderr.read()[-2000:]
                return False

        assert wait_until(pings, seconds=120, every=0.5), "mlflow models serve did not answer /ping in 120 s"
        body = json.dumps({"dataframe_records": [{"question": "What is the capital of France?"}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"dataframe_records": [{"country": "France"}]}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=120)
        error = json.loads(refused.value.read())
    finally:
        server.terminate()
        server.wait(30)
    assert refused.value.code == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE", error
    last = error["message"].splitlines()[-1]  # the server quotes the frame above it; the reason is one line
    assert "missing inputs ['question']" in last and "Traceback" not in json.dumps(error), error
    predictions = answer["predictions"]
    assert len(predictions) == 1 and "Paris" in predictions[0]["completion"]  # greedy: "... is Paris."


def test_a_tune_left_running_by_a_dead_process_ends_killed_when_the_next_starts_a_live_ones_stays(store):
    import socket
    from mlflow.tracking import MlflowClient

    from engine.mlflow.tracking import Tracker, process_tag

    dead = subprocess.Popen(["true"])
    dead.wait()
    client = MlflowClient(store["uri"], store["uri"])
    first = Tracker(store["uri"], "stale")
    first.start({}, {"task": "t"})
    client.set_tag(first.run_id, "engine.process", f"{socket.gethostname()}:{dead.pid}:12345")  # as kill -9 left it
    live = Tracker(store["uri"], "stale")
    live.start({}, {"task": "t"})  # this process: alive
    elsewhere = Tracker(store["uri"], "stale")
    elsewhere.start({}, {"task": "t"})
    client.set_tag(elsewhere.run_id, "engine.process", "another-host:1:1")
    Tracker(store["uri"], "stale").start({}, {"task": "t"})
    assert client.get_run(first.run_id).info.status == "KILLED"
    assert "ended without closing the run" in client.get_run(first.run_id).data.tags["mlflow.note.content"]
    assert client.get_run(live.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.run_id).info.status == "RUNNING"
    assert process_tag().startswith(socket.gethostname() + ":")
