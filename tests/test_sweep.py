"""A sweep is a run: `python -m engine.tune -m ...` opens a sweep run, nests each job's tune run under it,
records the winner (link, config, metric with interval, $ per 1K instances) and prints one line naming it;
`engine.promote sweep=...` takes that winner. Real processes against the loopback fake and a real store."""
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.support.fake_openai import FakeOpenAI
from tests.support.helpers import child_env

FLAGS = ["model=gpt-4o-mini", "task.tune_size=4", "task.test_size=4", "budget.num_samples=2", "search=greedy",
         "progress=false"]


def engine(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=child_env(OPENAI_API_KEY="sk-test-sweep"),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return {"uri": uri, "client": MlflowClient(uri, uri), "dir": tmp_path}


def runs_of(store, kind):
    client = store["client"]
    experiment = client.get_experiment_by_name("arithmetic").experiment_id
    return [r for r in client.search_runs([experiment]) if r.data.tags.get("engine.kind") == kind]


def test_a_sweep_is_a_run_that_nests_its_jobs_and_names_its_winner(store):
    with FakeOpenAI() as fake:
        out = engine("engine.tune", "-m", "budget.optimization=0.01,0.02", f"model.base_url={fake.base_url}",
                     *FLAGS, f"tracking.uri={store['uri']}", cwd=store["dir"])
    assert out.returncode == 0, out.stderr[-3000:]
    (folder,) = (store["dir"] / "multirun").iterdir()  # multirun/<time>/, one for the whole sweep
    assert (folder / "multirun.yaml").exists()
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir())  # named by the overrides, with : and +
    assert folders == [f"{i}_budget.num_samples:2+budget.optimization:{b}+model:gpt-4o-mini+search:greedy+"
                       "task.test_size:4+task.tune_size:4" for i, b in ((0, "0.01"), (1, "0.02"))]
    for job in folders:
        log = (folder / job / "tune.log").read_text()
        assert "summary" in log and "success on test" in log and "dollars paid" in log
        assert "chosen by rule best" in log and "95% CI [" in log  # why it won, how sure the numbers are
    noise = [line for line in (out.stdout + out.stderr).splitlines() if "View run" in line or "Warning" in line]
    assert not noise, noise
    (sweep,) = runs_of(store, "sweep")
    jobs = runs_of(store, "tune")
    assert len(jobs) == 2 and {j.data.tags["mlflow.parentRunId"] for j in jobs} == {sweep.info.run_id}
    assert {j.data.tags["sweep"] for j in jobs} == {str(folder.resolve())}
    for j in jobs:
        assert {"tune_success_ci_low", "tune_success_ci_high", "test_success_se"} <= set(j.data.metrics)
        assert "chosen by rule best: " in j.data.tags["mlflow.note.content"]
    assert sorted(j.info.run_name for j in jobs) == [
        f"budget.optimization={b} · budget.num_samples=2 · model=gpt-4o-mini · search=greedy · task.test_size=4 · "
        "task.tune_size=4 · arithmetic · gpt-4o-mini" for b in ("0.01", "0.02")]  # what the sweep varies first
    assert sweep.info.status == "FINISHED"
    tags, winner = sweep.data.tags, next(j for j in jobs if j.info.run_id == sweep.data.tags["winner_run_id"])
    # both jobs test equally well on the fake: the rule takes the cheaper, then the earlier one
    assert tags["winner"] == winner.info.run_name and f"runs/{winner.info.run_id})" in tags["mlflow.note.content"]
    assert sweep.info.run_name.startswith("sweep · budget.optimization=0.01,0.02 · arithmetic → budget.optimization=")
    assert sweep.data.params["winner.model"] == "gpt-4o-mini" and "winner.prompt" in sweep.data.params
    assert sweep.data.metrics["winner_test_success"] == winner.data.metrics["test_success"]
    assert {"winner_test_success_ci_low", "winner_test_success_ci_high",
            "winner_test_inference_cost_usd_per_1k_instances"} <= set(sweep.data.metrics)
    assert sweep.data.metrics["jobs"] == 2 and sweep.data.metrics["jobs_finished"] == 2
    lines = [line for line in out.stdout.splitlines() if line.startswith("sweep winner: ")]
    assert len(lines) == 1 and winner.info.run_name in lines[0] and "per 1K instances" in lines[0]
    assert "95% CI" in lines[0] and winner.info.run_id in lines[0]

    promoted = engine("engine.promote", f"sweep={sweep.info.run_id}", f"tracking.uri={store['uri']}",
                      cwd=store["dir"])
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert f"from run {winner.info.run_id}" in promoted.stdout
    last = engine("engine.promote", "sweep=last", "alias=staging", f"tracking.uri={store['uri']}", cwd=store["dir"])
    assert last.returncode == 0 and f"from run {winner.info.run_id}" in last.stdout, last.stderr[-3000:]


def test_a_sweep_whose_jobs_all_fail_ends_failed_and_leaves_no_empty_folder(store):
    # nothing listens on port 9: every job fails at its first request
    out = engine("engine.tune", "-m", "budget.optimization=0.01,0.02", "model.base_url=http://127.0.0.1:9/v1",
                 "requests.max_retry_period=1", *FLAGS, f"tracking.uri={store['uri']}", cwd=store["dir"])
    assert out.returncode != 0
    (sweep,) = runs_of(store, "sweep")
    assert sweep.info.status == "FAILED" and "no job finished" in sweep.data.tags["mlflow.note.content"]
    assert all(j.info.status == "FAILED" for j in runs_of(store, "tune"))


def test_a_sweep_that_fails_before_any_job_removes_its_folder(store):
    out = engine("engine.tune", "-m", "budget.optimization=oops,oops2", *FLAGS, f"tracking.uri={store['uri']}",
                 cwd=store["dir"])
    assert out.returncode != 0
    left = [p for p in (store["dir"] / "multirun").rglob("*")] if (store["dir"] / "multirun").exists() else []
    assert not [p for p in left if p.is_file()], left
    (sweep,) = runs_of(store, "sweep")
    assert sweep.info.status == "FAILED"


def test_a_sweep_with_tracking_off_writes_no_run(store):
    with FakeOpenAI() as fake:
        out = engine("engine.tune", "-m", "budget.optimization=0.01,0.02", f"model.base_url={fake.base_url}",
                     *FLAGS, "tracking=off", f"tracking.uri={store['uri']}", cwd=store["dir"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert store["client"].get_experiment_by_name("arithmetic") is None and "sweep winner" not in out.stdout
