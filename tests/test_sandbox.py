"""Model-written code runs in an operating-system sandbox: a battery of escapes, each of which must fail and
leave nothing behind on the host. Every escape program exits 0 only if it got out, so a refusal shows as a
failed run, and the host-side check (a file, a listener, a process, an environment variable) says the same."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from engine.tasks.sandbox import MODE_ENV, Limits, SandboxUnavailable, run_python
from tests.support.escapes import BATTERY, CANARY, Host
from tests.support.fake_openai import FakeOpenAI

@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.delenv(MODE_ENV, raising=False)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with Host(tmp_path_factory.mktemp("host")) as target:
        yield target


@pytest.mark.parametrize("escape", BATTERY, ids=[e.name for e in BATTERY])
def test_an_escape_fails_and_leaves_nothing_behind(escape, host, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)  # the project folder is the one to hide
    outcome = run_python(escape.program(host), escape.timeout)
    assert not outcome.passed, f"{escape.name}: got out"
    assert not escape.left(host), f"{escape.name}: left something on the host"
    assert run_python("pass\n").passed  # and the machine still runs the next one


def test_a_plain_program_runs_and_its_failures_say_why():
    assert run_python("import math, json, re, collections\nassert math.sqrt(4) == 2\n").passed
    failed = run_python("assert 1 == 2, 'off by one'\n")
    assert not failed.passed and failed.reason == "AssertionError: off by one"
    assert run_python("while True:\n    pass\n", timeout=1.0).reason == "timed out"


def test_what_the_limits_refuse_is_said_and_what_they_allow_runs(host):
    by_name = {e.name: e for e in BATTERY}
    big = run_python(by_name["a 1 GB file"].program(host))
    assert big.reason == "OSError: [Errno 27] File too large"  # the file-size limit, 16 MiB
    full = run_python(by_name["/tmp filled past 64 MiB"].program(host))
    assert "No space left on device" in full.reason  # /tmp is a 64 MiB tmpfs, in memory
    assert run_python("open('/tmp/small', 'w').write('fine')\nassert open('/tmp/small').read() == 'fine'\n").passed
    assert run_python("x = bytearray(100 << 20)\n", limits=Limits()).passed
    start = time.monotonic()
    daemons = run_python(by_name["daemons in their own session"].program(host), timeout=2.0)
    assert daemons.reason == "timed out"
    # a generous bound, only to say it did not hang: the daemons hold the program's output open for 60 s
    assert time.monotonic() - start < 45


def test_without_bubblewrap_code_is_refused_unless_the_user_opts_in(monkeypatch):
    import engine.tasks.sandbox as sandbox

    sandbox._checked_bubblewrap.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*ENGINE_SANDBOX=unsafe"):
            run_python("pass\n")
        monkeypatch.setenv(MODE_ENV, "unsafe")
        with pytest.warns(RuntimeWarning, match="WITHOUT an operating-system sandbox"):
            sandbox._warn_unsafe.cache_clear()
            assert run_python("import os, sys\nsys.exit(1 if 'OPENAI_API_KEY' in os.environ else 0)\n").passed
        monkeypatch.setenv(MODE_ENV, "none")
        with pytest.raises(SandboxUnavailable, match="ENGINE_SANDBOX='none'"):
            run_python("pass\n")
    finally:
        sandbox._checked_bubblewrap.cache_clear()


def test_a_code_task_without_bubblewrap_refuses_before_any_request_and_sandbox_unsafe_opts_in(tmp_path):
    from tests.test_cli import engine

    no_bwrap = {"PATH": str(Path(sys.executable).parent)}  # the venv's python, and no bwrap on the PATH
    with FakeOpenAI() as fake:
        args = ("engine.tune", "task=humaneval", "model=gpt-4o-mini", f"model.base_url={fake.base_url}",
                "task.tune_size=2", "task.test_size=2", "budget.num_samples=1", "search=greedy",
                "tracking=off", "hydra.run.dir=out")
        refused = engine(*args, cwd=tmp_path, env={**no_bwrap, "OPENAI_API_KEY": "sk-test-sandbox"})
        assert refused.returncode != 0 and "bubblewrap (bwrap) is not installed" in refused.stderr
        assert "sandbox=unsafe" in refused.stderr and not fake.requests
        bad = engine(*args, "sandbox=none", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test-sandbox"})
        assert bad.returncode != 0 and "sandbox: invalid value 'none'" in bad.stderr and not fake.requests
