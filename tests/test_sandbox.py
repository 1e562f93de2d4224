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

from engine.sandbox import MODE_ENV, Limits, SandboxUnavailable, run_python
from conftest import wait_until
from fake_openai import FakeOpenAI

CANARY = "sk-test-SANDBOX-CANARY-0123456789"


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.delenv(MODE_ENV, raising=False)


def escapes(program: str, timeout: float = 5.0) -> bool:
    return run_python(program, timeout).passed


def test_a_plain_program_runs_and_its_failures_say_why():
    assert run_python("import math, json, re, collections\nassert math.sqrt(4) == 2\n").passed
    failed = run_python("assert 1 == 2, 'off by one'\n")
    assert not failed.passed and failed.reason == "AssertionError: off by one"
    assert run_python("while True:\n    pass\n", timeout=1.0).reason == "timed out"


def test_the_environment_is_empty_and_the_home_and_project_are_not_there(tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    assert not escapes("import os, sys\nsys.exit(0 if 'OPENAI_API_KEY' in os.environ or os.environ.get('HOME') != '/tmp' else 1)\n")
    assert not escapes(f"open({str(secret)!r}).read()\n")
    assert not escapes(f"import os\nos.listdir({os.getcwd()!r})\n")
    top = os.path.realpath(sys.base_prefix).split("/")[1]  # where the Python installation is mounted, read-only
    allowed = {"usr", "lib", "lib64", "bin", "sbin", "proc", "dev", "tmp", top}
    assert escapes(f"import os, sys\nsys.exit(0 if set(os.listdir('/')) <= {allowed!r} else 1)\n")


def test_the_import_guard_cannot_be_popped_posix_cannot_start_what_reaches_the_host(tmp_path):
    target = tmp_path / "touched-by-posix"
    assert not escapes("import sys\nwhile sys.meta_path: sys.meta_path.pop(0)\nimport posix\n"
                       f"sys.exit(0 if posix.system('touch {target}') == 0 else 1)\n")
    assert not target.exists()
    via_ctypes = tmp_path / "touched-by-ctypes"
    assert not escapes(f"import ctypes, sys\nsys.exit(0 if ctypes.CDLL(None).system(b'touch {via_ctypes}') == 0 else 1)\n")
    assert not via_ctypes.exists()


def test_writes_outside_its_temp_folder_fail_and_a_1_gb_file_is_cut_short(tmp_path):
    outside = tmp_path / "written-outside"
    assert not escapes(f"open({str(outside)!r}, 'w').write('x')\n")
    assert not escapes("open('/usr/escaped', 'w').write('x')\n")
    assert not outside.exists() and not os.path.exists("/usr/escaped")
    big = run_python("with open('/tmp/big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n")
    assert not big.passed and big.reason == "OSError: [Errno 27] File too large"  # the file-size limit, 16 MiB
    many = run_python("for i in range(8):\n    with open(f'/tmp/part{i}', 'wb') as f:\n"
                      "        for _ in range(15):\n            f.write(b'x' * (1 << 20))\n")
    assert not many.passed and "No space left on device" in many.reason  # /tmp is a 64 MiB tmpfs, in memory
    assert run_python("open('/tmp/small', 'w').write('fine')\nassert open('/tmp/small').read() == 'fine'\n").passed


def test_no_network_not_even_the_hosts_loopback_nor_dns():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                accepted.append(listener.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        assert not escapes(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'k')\n")
        assert not escapes("import socket\nsocket.getaddrinfo('pypi.org', 443)\n")
        assert not escapes("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:%d/', timeout=2)\n" % port)
    finally:
        thread.join()
        listener.close()
    assert not accepted


def test_it_cannot_see_or_signal_processes_outside():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not escapes(f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)\n")
        assert not escapes(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\n")
        assert not escapes("import os, sys\n"
                           "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) > 3]\n"
                           "sys.exit(0 if len(others) > 2 else 1)\n")  # only its own few processes exist
        assert not escapes(f"import os\nos.listdir('/proc/{os.getpid()}/cwd')\n")
        assert victim.poll() is None  # still running
    finally:
        victim.kill()
        victim.wait()


def marker_processes(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_processes_it_starts_die_with_it_even_in_their_own_session_and_a_fork_bomb_is_bounded():
    marker = f"sandbox-daemon-{uuid.uuid4().hex}"
    daemons = run_python("import os, subprocess, sys\n"
                         "for _ in range(5):\n"
                         f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'],"
                         " start_new_session=True)\n"
                         "import time\ntime.sleep(30)\n", timeout=2.0)
    assert daemons.reason == "timed out"
    assert wait_until(lambda: not marker_processes(marker), seconds=5), "a process outlived the sandbox"
    start = time.monotonic()
    bomb = run_python("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                      timeout=3.0)
    assert not bomb.passed and time.monotonic() - start < 20
    assert run_python("pass\n").passed  # and the machine still runs the next one


def test_memory_is_limited():
    assert not escapes("x = bytearray(2 << 30)\n")
    assert run_python("x = bytearray(100 << 20)\n", limits=Limits()).passed


def test_without_bubblewrap_code_is_refused_unless_the_user_opts_in(monkeypatch):
    import engine.sandbox as sandbox

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
    from test_cli import engine

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
