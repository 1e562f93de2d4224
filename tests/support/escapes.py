"""The escape battery for the sandbox of model-written code, shared by tests/test_sandbox.py and
`make bench-faults`: each escape is a program that exits 0 only if it got out, plus a host-side check (a
file written, a connection accepted, a process killed or left running, a key seen) that says the same from
outside. An escape succeeded if either says so."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .helpers import wait_until

CANARY = "sk-test-SANDBOX-CANARY-0123456789"  # put in the environment before the battery runs


@dataclass
class Host:
    """What the escapes aim at on the host: a private folder, a loopback listener, a process to kill."""

    folder: Path
    listener: socket.socket = field(init=False)
    accepted: list = field(default_factory=list)
    victim: subprocess.Popen = field(init=False)
    marker: str = field(default_factory=lambda: f"sandbox-daemon-{uuid.uuid4().hex}")
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Host":
        (self.folder / "id_rsa").write_text("PRIVATE KEY")
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self.victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.listener.close()
        self.victim.kill()
        self.victim.wait()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self.listener.accept())
            except OSError:
                pass

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def marker_processes(self) -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.marker.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
        return found


@dataclass(frozen=True)
class Escape:
    name: str
    program: Callable[[Host], str]
    left: Callable[[Host], bool] = lambda host: False  # evidence on the host after the run
    timeout: float = 5.0


def _gone(path: Path) -> Callable[[Host], bool]:
    return lambda host: (host.folder / path).exists()


def _daemons_left(host: Host) -> bool:
    # the sandbox's kill reaches them within moments; 30 s only bounds the wait on a loaded machine
    return not wait_until(lambda: not host.marker_processes(), seconds=30, every=0.05)


BATTERY = [
    Escape("the environment's API key", lambda h: "import os, sys\nsys.exit(0 if 'OPENAI_API_KEY' in os.environ "
                                                  "or os.environ.get('HOME') != '/tmp' else 1)\n"),
    Escape("a private file of the user", lambda h: f"open({str(h.folder / 'id_rsa')!r}).read()\n"),
    Escape("the project folder", lambda h: f"import os\nos.listdir({os.getcwd()!r})\n"),
    Escape("sys.meta_path popped, posix.system", lambda h: (
        "import sys\nwhile sys.meta_path: sys.meta_path.pop(0)\nimport posix\n"
        f"sys.exit(0 if posix.system('touch {h.folder / 'posix'}') == 0 else 1)\n"), _gone(Path("posix"))),
    Escape("ctypes system()", lambda h: (
        f"import ctypes, sys\nsys.exit(0 if ctypes.CDLL(None).system(b'touch {h.folder / 'ctypes'}') == 0 else 1)\n"),
        _gone(Path("ctypes"))),
    Escape("a write outside its folder", lambda h: f"open({str(h.folder / 'outside')!r}, 'w').write('x')\n",
           _gone(Path("outside"))),
    Escape("a write to /usr", lambda h: "open('/usr/escaped', 'w').write('x')\n",
           lambda h: os.path.exists("/usr/escaped")),
    Escape("a 1 GB file", lambda h: "with open('/tmp/big', 'wb') as f:\n    for _ in range(1024):\n"
                                    "        f.write(b'x' * (1 << 20))\n"),
    Escape("/tmp filled past 64 MiB", lambda h: "for i in range(8):\n    with open(f'/tmp/part{i}', 'wb') as f:\n"
                                                "        for _ in range(15):\n            f.write(b'x' * (1 << 20))\n"),
    Escape("a loopback connection to the host", lambda h: (
        f"import socket\nsocket.create_connection(('127.0.0.1', {h.port}), timeout=2).sendall(b'k')\n"),
        lambda h: bool(h.accepted)),
    Escape("DNS", lambda h: "import socket\nsocket.getaddrinfo('pypi.org', 443)\n"),
    Escape("HTTP to the host", lambda h: f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{h.port}/', "
                                         "timeout=2)\n", lambda h: bool(h.accepted)),
    Escape("SIGKILL to another process", lambda h: f"import os, signal\nos.kill({h.victim.pid}, signal.SIGKILL)\n",
           lambda h: h.victim.poll() is not None),
    Escape("SIGTERM to its parent", lambda h: f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\n"),
    Escape("the host's processes in /proc", lambda h: (
        "import os, sys\nothers = [p for p in os.listdir('/proc') if p.isdigit() and int(p) > 3]\n"
        "sys.exit(0 if len(others) > 2 else 1)\n")),
    Escape("/proc/<parent>/cwd", lambda h: f"import os\nos.listdir('/proc/{os.getpid()}/cwd')\n"),
    Escape("daemons in their own session", lambda h: (
        "import os, subprocess, sys\nfor _ in range(5):\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{h.marker}'],"
        " start_new_session=True)\nimport time\ntime.sleep(30)\n"), _daemons_left, timeout=2.0),
    Escape("a fork bomb", lambda h: (
        "import os, sys, time\nborn = 0\nfor _ in range(2000):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        continue\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n"
        "    born += 1\nsys.exit(0 if born >= 1000 else 1)\n"), timeout=10.0),
    Escape("2 GB of memory", lambda h: "x = bytearray(2 << 30)\n"),
    Escape("a host folder mounted in", lambda h: (
        "import os, sys\n"
        f"sys.exit(0 if set(os.listdir('/')) - {{'usr', 'lib', 'lib64', 'bin', 'sbin', 'proc', 'dev', 'tmp', "
        f"{os.path.realpath(sys.base_prefix).split('/')[1]!r}}} else 1)\n")),
]


def run_battery(folder: Path, run_python) -> list[tuple[str, bool, str]]:
    """(escape, succeeded, the sandbox's reason) for every escape of the battery, with OPENAI_API_KEY set."""
    os.environ.setdefault("OPENAI_API_KEY", CANARY)
    results = []
    with Host(folder) as host:
        for escape in BATTERY:
            outcome = run_python(escape.program(host), escape.timeout)
            results.append((escape.name, outcome.passed or escape.left(host), outcome.reason))
    return results
