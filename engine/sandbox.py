"""Run generated code in a subprocess: a timeout, a memory limit, no network and no child processes.

The child is an isolated interpreter (`-I`) whose import system refuses network, process and FFI modules
(so `import socket` fails cleanly) and whose `os` cannot start or signal processes; an infinite loop is
killed at the timeout. This guards a benchmark against accidents and sloppy code, not a determined attacker:
run untrusted code in a container or VM as well.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass

PREAMBLE = r'''
import resource, sys
_BLOCKED = {"socket", "_socket", "ssl", "_ssl", "http", "urllib", "ftplib", "smtplib", "poplib", "imaplib",
            "telnetlib", "xmlrpc", "requests", "httpx", "subprocess", "_posixsubprocess", "multiprocessing",
            "ctypes", "_ctypes", "asyncio", "pty", "pexpect"}
class _NoNetwork:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"module {name!r} is not available in the sandbox")
        return None
sys.meta_path.insert(0, _NoNetwork())
for _m in list(sys.modules):
    if _m.split(".")[0] in _BLOCKED:
        del sys.modules[_m]
import os as _os
def _refused(*args, **kwargs):
    raise PermissionError("starting processes is not allowed in the sandbox")
for _name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve", "execl",
              "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
              "spawnv", "spawnve", "spawnvp", "spawnvpe", "kill", "killpg"):
    if hasattr(_os, _name):
        setattr(_os, _name, _refused)
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
del resource, _os, _name
'''


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    reason: str  # "passed", "timed out", or the last line of the error


def run_python(program: str, timeout: float = 5.0) -> SandboxResult:
    """Run `program`; it passes when it exits 0 within `timeout` seconds."""
    with tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run([sys.executable, "-I", "-"], input=PREAMBLE + "\n" + program, text=True,
                                  capture_output=True, timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            return SandboxResult(False, "timed out")
    if proc.returncode == 0:
        return SandboxResult(True, "passed")
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return SandboxResult(False, lines[-1] if lines else f"exit code {proc.returncode}")
