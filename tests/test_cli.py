"""The command line as a user runs it: Hydra help, a multirun sweep on the embedded model, engine.test,
and no secret in anything Hydra or the engine writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def engine(*args, cwd, env=None, timeout=600):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def test_help_and_cfg_job_work_as_in_any_hydra_app(tmp_path):
    help_ = engine("engine.tune", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "model: " in help_.stdout and "smollm2" in help_.stdout
    text = help_.stdout
    assert text.startswith("engine.tune: find the cheapest LLM inference settings") and "is powered by Hydra" not in text
    tasks = sorted(path.stem for path in (ROOT / "conf" / "task").glob("*.yaml"))
    assert f"task: {', '.join(tasks)}" in text  # the groups, as conf/task holds them
    assert text.count("  python -m engine.tune ") == 3 and "arithmetic, capitals, math: success" in text
    job = engine("engine.tune", "--cfg", "job", "model=gpt-4o-mini", "task=capitals", cwd=tmp_path)
    assert job.returncode == 0 and "name: gpt-4o-mini" in job.stdout, job.stderr[-2000:]
    search = job.stdout.split("\nsearch:\n", 1)[1].split("\nbudget:", 1)[0]  # the space that will run, not nulls
    assert "What is the capital of {country}?" in search and "prompts: null" not in search
    assert "max_tokens: null" not in search and "lograndint" in search


def test_cfg_job_with_m_shows_one_config_per_sweep_job(tmp_path):
    sweep = engine("engine.tune", "-m", "budget.optimization=0.1,0.2", "task=capitals", "--cfg", "job", cwd=tmp_path)
    assert sweep.returncode == 0 and "Traceback" not in sweep.stderr, sweep.stderr[-2000:]
    assert "# job 0: budget.optimization=0.1 task=capitals" in sweep.stdout
    assert "# job 1: budget.optimization=0.2 task=capitals" in sweep.stdout
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("entry, override, says", [
    ("engine.tune", "budgt.optimization=0.1", "budgt: unknown key; did you mean budget?"),
    ("engine.tune", "budget.optimizaton=0.1", "did you mean budget.optimization?"),
    ("engine.promote", "run_idd=abc", "did you mean run_id?"),
])
def test_a_mistyped_key_names_the_key_it_resembles_instead_of_suggesting_plus(tmp_path, entry, override, says):
    bad = engine(entry, override, cwd=tmp_path)
    assert bad.returncode == 1 and says in bad.stderr and "+budgt" not in bad.stderr, bad.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("override, says", [
    ("budget.optimization=-2", "budget.optimization"),
    ("budget.optimization=nan", "budget.optimization"),
    ("task.metric=contains", "task.metric: task 'arithmetic' is registered in code"),
    ("config=outputs/best_config.json", "engine.tune searches for a config"),
])
def test_a_bad_or_idle_override_fails_before_any_request(tmp_path, override, says):
    bad = engine("engine.tune", override, cwd=tmp_path)
    assert bad.returncode != 0 and says in bad.stderr, bad.stderr[-2000:]
    assert not (tmp_path / ".cache").exists()


@pytest.mark.embedded
def test_multirun_sweeps_two_budgets_on_the_embedded_model_then_test_reuses_the_best(tmp_path):
    sweep = engine("engine.tune", "-m", "budget.optimization=0.0003,0.0005", "task.tune_size=3",
                   "task.test_size=3", "search=greedy", "search.max_tokens=[randint,4,12]",
                   f"hydra.sweep.dir={tmp_path}/multirun", "parallel.concurrency=2", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    jobs = sorted((tmp_path / "multirun").glob("[0-9]_budget.optimization:*"))
    assert len(jobs) == 2
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["trials"] >= 1 and summary["tune_paid"] <= summary["budget"]
        assert (job / "best_config.json").exists() and (job / "trials.jsonl").exists()
    assert sweep.stdout.count("success on test") == 2
    best = jobs[0] / "best_config.json"
    tested = engine("engine.test", f"config={best}", "task.test_size=3", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-2000:]
    result = json.loads(tested.stdout)
    assert result["task"] == "arithmetic" and 0 <= result["success"] <= 1
    assert result["success_ci_low"] <= result["success"] <= result["success_ci_high"]
    assert result["cache_hits"] == result["requests"] >= 3 and result["spent"] == 0  # the tune's test run, cached


def test_a_key_given_as_an_override_is_refused_before_hydra_writes_it(tmp_path):
    secret = "sk-test-OVERRIDE-0123456789abcdef"
    out = engine("engine.tune", f"+model.api_key={secret}", "task=capitals", cwd=tmp_path)
    assert out.returncode != 0 and "model.api_key: credentials are never taken from the command line" in out.stderr
    assert "OPENAI_API_KEY" in out.stderr and secret not in out.stdout + out.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "Hydra wrote files before the refusal"


def test_no_secret_in_anything_written(tmp_path):
    secret = "sk-test-DO-NOT-LEAK-0123456789abcdef"
    with FakeOpenAI() as fake:
        run = engine("engine.tune", "model=gpt-4o-mini", f"model.base_url={fake.base_url}", "task.tune_size=4",
                     "task.test_size=4", "budget.optimization=0.01", "budget.num_samples=2", "search=greedy",
                     f"hydra.run.dir={tmp_path}/out", cwd=tmp_path, env={"OPENAI_API_KEY": secret})
        assert run.returncode == 0, run.stderr[-3000:]
        headers = [{k.lower(): v for k, v in r["headers"].items()} for r in fake.requests]
        assert headers and all(h["authorization"] == f"Bearer {secret}" for h in headers)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in written) and any(p.name == "trials.jsonl" for p in written)
    for path in written:
        assert b"DO-NOT-LEAK" not in path.read_bytes(), f"the key leaked into {path}"
    assert "DO-NOT-LEAK" not in run.stdout + run.stderr


# A sweep's folder, its jobs' logs and its MLflow runs: tests/test_sweep.py.


def test_a_failed_tune_writes_its_error_to_tune_log(tmp_path):
    bad = engine("engine.tune", "budget.optimization=-2", "hydra.run.dir=out", cwd=tmp_path)
    assert bad.returncode != 0
    assert "error: budget.optimization: invalid value -2" in (tmp_path / "out" / "tune.log").read_text()


KEY = "sk-test-OVERRIDE-0123456789abcdef"


@pytest.mark.parametrize("override", [
    f"+model.API_KEY={KEY}", f"+model.apikey={KEY}", f"+model.api-key={KEY}",
    f"+hydra.job.env_set.OPENAI_API_KEY={KEY}", f"model.api_key_env={KEY}",
    f"model.base_url=https://user:{KEY}@api.example/v1", f"+task.note={KEY}",
])
def test_anything_key_shaped_is_refused_before_hydra_writes_a_file_and_never_echoed(tmp_path, override):
    out = engine("engine.tune", override, "task=capitals", cwd=tmp_path)
    assert out.returncode != 0 and "set the environment variable instead" in out.stderr, out.stderr[-1000:]
    assert "OVERRIDE-0123456789" not in out.stdout + out.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "Hydra wrote files before the refusal"


def test_a_saved_config_cannot_send_the_key_to_another_host(tmp_path):
    secret = "sk-test-REDIRECT-0123456789abcdef"
    with FakeOpenAI() as elsewhere:
        saved = tmp_path / "best_config.json"
        saved.write_text(json.dumps({"model": "gpt-4o-mini", "prompt": "{country}?", "max_tokens": 4,
                                     "base_url": elsewhere.base_url}))
        out = engine("engine.test", f"config={saved}", "task=capitals", "task.test_size=2", cwd=tmp_path,
                     env={"OPENAI_API_KEY": secret})
        assert out.returncode != 0 and "sets base_url: a saved or registered config cannot choose" in out.stderr
        assert not elsewhere.requests  # not one request, so the key went nowhere
    assert secret not in out.stdout + out.stderr


def test_credentials_in_any_spelling_are_redacted_and_a_key_is_no_variable_name():
    from engine.core.errors import ConfigError
    from engine.core.models import ModelSpec
    from engine.core.redaction import public_view

    view = public_view({"API_KEY": "a", "apiKey": "b", "prompt": f"use {KEY}", "base_url": "https://u:pw@h/v1",
                        "config_list": [{"model": "m", "api_key": "c"}]})
    assert view == {"API_KEY": "***", "apiKey": "***", "prompt": "use ***", "base_url": "https://u:***@h/v1",
                    "config_list": [{"model": "m", "api_key": "***"}]}
    with pytest.raises(ConfigError, match="api_key_env takes the NAME") as pasted:
        ModelSpec(name="m", api_key_env=KEY)
    assert KEY not in str(pasted.value)
    with pytest.raises(ConfigError, match="base_url holds a password"):
        ModelSpec(name="m", base_url="https://u:pw@h/v1")


def test_engine_test_of_a_config_from_a_file_shows_its_worst_case_and_needs_a_cap_that_covers_it(tmp_path):
    saved = tmp_path / "best_config.json"
    saved.write_text(json.dumps({"model": "gpt-4o-mini", "prompt": "Capital of {country}?", "max_tokens": 4000,
                                 "n": 64}))
    with FakeOpenAI() as fake:
        args = ("engine.test", f"config={saved}", "model=gpt-4o-mini", f"model.base_url={fake.base_url}",
                "task=capitals", "task.test_size=4", "budget.optimization=0.01", "tracking=off")
        refused = engine(*args, cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test-cap"})
        assert refused.returncode != 0 and "preflight: 4 points; this config could cost up to $" in refused.stderr
        assert "above the cap of $0.010000: raise budget.test to $" in refused.stderr
        assert not fake.requests
        allowed = engine(*args, "budget.test=1.0", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test-cap"})
        assert allowed.returncode == 0, allowed.stderr[-2000:]
        assert 0 < fake.billed(0.00015, 0.0006) <= 1.0 and json.loads(allowed.stdout)["spent"] > 0
