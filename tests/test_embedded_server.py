"""Sharing and supervising the embedded server, with a stand-in for llama.cpp's server (tests/support/fake_openai.py
run as its own process): crashes said in words, a slow server joined and never stopped, orphans stopped, a log
per start, one server per install. Fast: no model is loaded."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engine.core.errors import EmbeddedServerError
from engine.core.models import ModelCatalog
from engine.requests.providers import ProviderClient
from engine.requests.providers.embedded import EmbeddedServer, _alive, _answers
from engine.requests.requester import Requester, prepare
from engine.requests.cache import CacheRoot
from engine.session import Session
from tests.support.helpers import wait_until

FAKE = str(Path(__file__).with_name("support") / "fake_openai.py")  # standard library only: runs as a script


def standin(*options: str):
    """A command factory for EmbeddedServer: the loopback fake in place of llama_cpp.server."""
    return lambda port: [sys.executable, FAKE, "--port", str(port), *options]


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def requester_for(server: EmbeddedServer) -> Requester:
    catalog = ModelCatalog()
    catalog.add({"name": server.name, "provider": "embedded", "chat": True,
                 "price_per_1k": {"prompt": 0.001, "completion": 0.001}})
    return Requester(catalog, CacheRoot("unused"), ProviderClient(embedded=server))


def ask(requester: Requester, name: str, text: str = "What is 1 + 2?") -> dict:
    requests = prepare({"model": name, "prompt": text, "max_tokens": 4}, None, requester.catalog, 41)
    return requester.run(requests, use_cache=False).response


def test_a_server_that_dies_again_after_a_restart_is_said_at_once_in_words(runtime):
    server = EmbeddedServer("crashy", 2048, command=standin("--die-with", "SIGILL"))
    requester = requester_for(server)
    start = time.monotonic()
    with pytest.raises(EmbeddedServerError) as caught:
        ask(requester, "crashy")
    message = str(caught.value)
    # a generous bound, only to say it did not hang: retrying would take the whole retry period, 120 s
    assert time.monotonic() - start < 90
    assert "died again right after a restart" in message
    assert "signal SIGILL (Illegal instruction)" in message
    logs = sorted(runtime.glob("crashy-*.log"))
    assert len(logs) == 2  # one per start: the first crash's evidence is kept
    assert str(logs[-1]) in message and "the server exited by signal SIGILL" in message  # the log's tail
    assert "make setup" in message
    with pytest.raises(EmbeddedServerError, match="SIGILL"):  # and every later request says the same at once
        ask(requester, "crashy")
    server.release()


def test_a_server_that_dies_while_starting_is_said_at_once(runtime):
    """It dies 1.5 s in, while its starter still holds the start lock and waits for it to answer."""
    dies = [sys.executable, "-c", "import os, signal, time; time.sleep(1.5); os.kill(os.getpid(), signal.SIGILL)"]
    server = EmbeddedServer("dies-starting", 2048, command=lambda port: dies, ready_timeout=300)
    start = time.monotonic()
    with pytest.raises(EmbeddedServerError, match=r"exited while starting, by signal SIGILL \(Illegal instruction\)"):
        server.base_url()
    # a generous bound, only to say it did not hang: missing the death would wait out ready_timeout, 300 s
    assert time.monotonic() - start < 120


def test_a_killed_server_is_restarted_transparently(runtime):
    server = EmbeddedServer("killed", 2048, command=standin())
    requester = requester_for(server)
    assert ask(requester, "killed")["choices"][0]["message"]["content"] == "3"
    first = server.read_state()
    os.killpg(first["pid"], signal.SIGKILL)  # supervisor and server, as an OOM killer or a user would
    assert wait_until(lambda: not _alive(first["pid"]) and not _answers(first["port"], timeout=1))  # both gone
    assert ask(requester, "killed")["choices"][0]["message"]["content"] == "3"
    assert server.read_state()["pid"] != first["pid"]
    server.release()
    assert not server.state_path.exists()


def test_a_slow_server_is_joined_and_never_stopped_by_a_process_that_joins_and_leaves(runtime):
    """A stand-in answers /v1/models after 5 s (a busy server on a loaded machine); this process uses it
    while a second process joins and leaves: no request is lost and the server's pid stays the same."""
    runtime.mkdir(parents=True)
    server = Session().embedded_server()  # the configured smollm2 server: the second process finds the same one
    standin_proc = subprocess.Popen([sys.executable, FAKE, "--models-delay", "5"], stdout=subprocess.PIPE, text=True,
                                    start_new_session=True)
    try:
        port = int(standin_proc.stdout.readline().strip().rsplit(":", 1)[1].split("/")[0])
        server.state_path.write_text(json.dumps({"pid": standin_proc.pid, "port": port}))
        requester = requester_for(server)
        answers, errors, stop = [], [], threading.Event()

        def use_it():
            while not stop.is_set():
                try:
                    answers.append(ask(requester, server.name, f"What is {len(answers)} + 1?"))
                except Exception as exc:  # noqa: BLE001 - counted below
                    errors.append(exc)
                stop.wait(0.05)  # a pace between requests, not a wait for anything

        user = threading.Thread(target=use_it)
        user.start()
        code = "from engine.session import Session; print(Session().embedded_server().base_url())"
        second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                env=os.environ)
        after = len(answers) + len(errors)
        assert wait_until(lambda: len(answers) + len(errors) >= after + 5)  # used on after the second one left
        stop.set()
        user.join(30)
        assert second.returncode == 0, second.stderr[-2000:]
        assert second.stdout.strip() == f"http://127.0.0.1:{port}/v1"
        assert not errors and len(answers) > 5
        assert standin_proc.poll() is None and server.read_state()["pid"] == standin_proc.pid
    finally:
        os.killpg(standin_proc.pid, signal.SIGKILL)
        standin_proc.wait()


ORPHAN = textwrap.dedent("""
    import os, signal, sys
    from engine.requests.providers.embedded import EmbeddedServer
    server = EmbeddedServer("orphan", 2048, idle_timeout=2,
                            command=lambda port: [sys.executable, sys.argv[1], "--port", str(port)])
    server.base_url()
    print(server.read_state()["pid"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no release: the server is orphaned
""")


def test_a_server_whose_users_were_all_killed_stops_after_its_idle_timeout(runtime):
    child = subprocess.run([sys.executable, "-c", ORPHAN, FAKE], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL
    pid = int(child.stdout.strip())
    # 2 s of idle timeout; 120 s only bounds the wait on a loaded machine
    assert wait_until(lambda: not _alive(pid), seconds=120, every=0.1), "the orphaned server outlived its idle timeout"
    assert not list(runtime.glob("orphan-*.json")) or all(p.name.endswith(".exit.json")
                                                           for p in runtime.glob("orphan-*.json"))
    record = json.loads(next(runtime.glob("orphan-*.exit.json")).read_text())
    assert "no process has used it for 2 s" in record["requested"]


def test_the_server_is_keyed_by_install(monkeypatch, runtime):
    here = EmbeddedServer("smollm2", 2048)
    assert here.key  # computed now, with this interpreter
    monkeypatch.setattr(sys, "executable", "/another/clone/.venv/bin/python")
    other = EmbeddedServer("smollm2", 2048)
    assert here.key != other.key and here.state_path != other.state_path
    assert EmbeddedServer("smollm2", 4096).key != other.key
