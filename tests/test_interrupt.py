"""Ctrl-C mid-tune keeps every paid response; rerunning the tune repays none of them. (n=1: with n > 1 the
engine asks a provider that honours n for further samples with an identical body, on purpose, and identical
bodies would no longer name one request.)"""
import json
import signal
import subprocess
import sys
import textwrap

from tests.support.helpers import wait_until
from tests.support.fake_openai import FakeOpenAI, landscape_responder

SCRIPT = textwrap.dedent("""
    import logging, signal, sys
    # Ctrl-C as a terminal delivers it, even when this test runs in a background job (which starts with SIGINT
    # ignored, and then Python installs no KeyboardInterrupt handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from engine import Completion
    from engine.session import Session
    base_url, cache = sys.argv[1], sys.argv[2]
    data = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(6) for b in range(4)]
    def eval_func(responses, **p):
        return {"success": any(r.split()[:1] == [str(p["answer"])] for r in responses)}
    with Session(seed=41, cache_path=cache) as session:
        session.catalog.add({"name": "fake-chat", "provider": "compatible", "base_url": base_url,
                             "price_per_1k": {"prompt": 0.001, "completion": 0.002}})
        print("starting", flush=True)
        Completion.tune(data, "success", "max", eval_func, optimization_budget=0.05, num_samples=4,
                        concurrency=4, model="fake-chat", prompt=["{question}", "Think step by step. {question}"],
                        max_tokens=12, n=1, logging_level=logging.ERROR)
    print("finished", flush=True)
""")


def _key(body):
    return json.dumps(body, sort_keys=True)


def test_interrupted_tune_loses_nothing_it_paid_for(tmp_path):
    # 0.3 s per answer: the whole tune takes seconds, so that Ctrl-C lands in the middle of it even when this
    # process is slow to notice the 10th request (a loaded machine)
    with FakeOpenAI(latency=0.3, responder=landscape_responder) as fake:
        cmd = [sys.executable, "-c", SCRIPT, fake.base_url, str(tmp_path / "cache")]
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Ctrl-C once the server has seen 10 requests (a server-side condition, not a delay)
        wait_until(lambda: len(fake.requests) >= 10 or child.poll() is not None, seconds=120)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        assert "finished" not in out and "KeyboardInterrupt" in err, err[-2000:]
        paid = {_key(r["body"]) for r in fake.requests if "usage" in r}
        assert len(paid) >= 10
        first_run = len(fake.requests)

        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert "finished" in rerun.stdout, rerun.stderr
        again = [_key(r["body"]) for r in fake.requests[first_run:]]
        assert again, "the rerun should go on where the first one stopped"
        assert not paid & set(again), "a response paid for before Ctrl-C was requested again"


def test_sigterm_takes_ctrl_cs_path_and_the_mlflow_run_ends_killed(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with FakeOpenAI(latency=0.3, responder=landscape_responder) as fake:
        cmd = [sys.executable, "-m", "engine.tune", "model=gpt-4o-mini", f"model.base_url={fake.base_url}",
               "task.tune_size=12", "task.test_size=4", "budget.optimization=0.05", "budget.num_samples=6",
               f"tracking.uri={uri}", "hydra.run.dir=out", "progress=false"]
        env = {**__import__("os").environ, "OPENAI_API_KEY": "sk-test-sigterm"}
        child = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # SIGTERM once the server has seen 6 requests (a server-side condition, not a delay)
        wait_until(lambda: len(fake.requests) >= 6 or child.poll() is not None, seconds=120)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=90)
        assert child.returncode == 130 and "interrupted: every response paid for is in the cache" in err, err[-2000:]
        paid = {_key(r["body"]) for r in fake.requests if "usage" in r}
        assert paid
    client = MlflowClient(uri, uri)
    (run,) = client.search_runs([client.get_experiment_by_name("arithmetic").experiment_id],
                                "tags.`engine.kind` = 'tune'")
    assert run.info.status == "KILLED"
