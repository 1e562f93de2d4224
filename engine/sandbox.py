"""Run untrusted generated code in a subprocess: a timeout, memory and CPU limits, and no network.

The child is an isolated interpreter (`-I`) whose import system refuses network and process modules,
so `import socket` fails cleanly; an infinite loop is killed at the timeout.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass

PREAMBLE = r'''
import resource, sys
_BLOCKED = {"socket", "_socket", "ssl", "_ssl", "http", "urllib", "ftplib", "smtplib", "poplib", "imaplib",
            "telnetlib", "xmlrpc", "requests", "httpx", "subprocess", "multiprocessing", "ctypes", "asyncio"}
class _NoNetwork:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"module {name!r} is not available in the sandbox")
        return None
sys.meta_path.insert(0, _NoNetwork())
for _m in list(sys.modules):
    if _m.split(".")[0] in _BLOCKED:
        del sys.modules[_m]
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
del resource
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
