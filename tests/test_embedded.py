"""End to end on the real embedded model: SmolLM2-135M served by llama.cpp, reached over HTTP."""
import os
import subprocess
import sys
import urllib.request

import pytest

from engine import Completion

pytestmark = pytest.mark.embedded


def test_smollm2_answers_through_the_openai_client_and_caches(cache_dir):
    config = dict(model="smollm2", prompt="What is the capital of {country}? Answer in one word.", max_tokens=6,
                  temperature=0)
    r = Completion.create(context={"country": "France"}, **config)
    texts = Completion.extract_text(r)
    assert len(texts) == 1 and "Paris" in texts[0]  # greedy decoding: "The capital of France is Paris"
    assert r["usage"]["completion_tokens"] <= 6 and r["usage"]["prompt_tokens"] > 5
    assert 0 < Completion.cost("smollm2", r) < 1e-4
    assert Completion.create(context={"country": "France"}, **config) == r


def test_smollm2_n_is_fanned_out_into_distinct_samples(cache_dir):
    r = Completion.create(model="smollm2", prompt="Say a random animal.", max_tokens=4, temperature=1.0, n=3)
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    assert len(set(Completion.extract_text(r))) >= 2


def test_one_server_is_shared_by_the_processes_of_the_machine(session):
    first = session.embedded_server().base_url()
    code = "from engine.session import Session; print(Session().embedded_server().base_url())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.stdout.strip() == first  # another process joins it too ...
    with urllib.request.urlopen(first + "/models", timeout=5) as r:  # ... and leaving does not stop it
        assert r.status == 200


def test_the_last_process_to_leave_stops_the_server(tmp_path):
    code = "from engine.session import Session; print(Session().embedded_server().base_url(), flush=True)"
    env = {**os.environ, "ENGINE_RUNTIME_DIR": str(tmp_path)}  # a machine of its own: no server to join
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    url = out.stdout.strip()
    assert url.startswith("http://127.0.0.1:"), out.stderr[-2000:]
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/models", timeout=5)
    states = [p for p in tmp_path.glob("smollm2-*.json") if not p.name.endswith(".exit.json")]
    assert not states, "the state file of a stopped server remains"
