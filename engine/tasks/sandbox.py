"""Run model-written code in an operating-system sandbox, never with the user's rights.

The isolation is the kernel's, through bubblewrap (`bwrap`, the sandbox Flatpak is built on; a maintained,
small setuid-free tool, in every distribution): the program runs in its own PID, network, IPC and UTS
namespaces (it sees no other process, has no network but an empty loopback of its own, and cannot signal
anything outside), on a root file system that holds only `/usr` and the Python installation, read-only, and an
empty `/tmp` of its own; with an empty environment; as the unprivileged user 65534 with no capabilities and
no way to gain them (no_new_privs). Resource limits bound its CPU time, memory, file size and process count,
and at the timeout the whole tree dies with the namespace. Nothing it writes outlives it.

Why bubblewrap rather than Python-level guards (an import hook can be popped off `sys.meta_path`, `posix` is
`os` unpatched) or raw `unshare`: it does the mount, namespace and privilege steps in one audited place and
fails closed. Where it is missing or the kernel refuses namespaces, code is not run: `SandboxUnavailable`
says how to install it, or how to opt in to running without it (`ENGINE_SANDBOX=unsafe`, `sandbox=unsafe`
on the command line), which then warns.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass

from ..core.errors import EngineError

MODE_ENV = "ENGINE_SANDBOX"  # "os" (the default) or "unsafe"
MODES = ("os", "unsafe")
NOBODY = 65534
TMP_BYTES = 64 << 20  # the sandbox's /tmp (and /dev/shm) is a tmpfs of this size: memory, not the host's disk
OUTPUT_TAIL = 4000  # characters of stderr kept for the reason


class SandboxUnavailable(EngineError):
    """No operating-system sandbox here, and the user did not opt in to running code without one."""


@dataclass(frozen=True)
class Limits:
    """What one program may use: CPU seconds, address space, bytes per file, processes (its own tree)."""

    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 32


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    reason: str  # "passed", "timed out", or the last line of the error


def mode() -> str:
    value = os.environ.get(MODE_ENV, "os") or "os"
    if value not in MODES:
        raise SandboxUnavailable(f"{MODE_ENV}={value!r}: use one of {list(MODES)}")
    return value


def run_python(program: str, timeout: float = 5.0, limits: Limits = Limits()) -> SandboxResult:
    """Run `program` with this Python's standard library; it passes when it exits 0 within `timeout` s."""
    python = [_interpreter(), "-I", "-S", "-B", "-"]
    if mode() == "unsafe":
        _warn_unsafe()
        return _run(python, program, timeout, limits)
    # the process count is limited inside: outside, it would count every process of the caller's user
    nproc = [shutil.which("prlimit") or "/usr/bin/prlimit", f"--nproc={limits.processes}", "--"]
    return _run(list(_checked_bubblewrap()) + nproc + python, program, timeout, limits)


@functools.lru_cache(maxsize=1)
def _checked_bubblewrap() -> tuple[str, ...]:
    """The command, tried once per process on a program that does nothing."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "model-written code runs only in an operating-system sandbox, and bubblewrap (bwrap) is not installed: "
            "install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or opt in "
            f"to running it with your own rights: {MODE_ENV}=unsafe (python -m engine.tune ... sandbox=unsafe)")
    command = _bwrap_arguments(bwrap)
    try:
        probe = subprocess.run(command + [_interpreter(), "-I", "-S", "-c", "pass"], capture_output=True,
                               text=True, timeout=30, env={})
    except subprocess.TimeoutExpired:
        raise SandboxUnavailable("bubblewrap did not start a trivial program within 30 s") from None
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot isolate a program here ({_last_line(probe.stderr) or f'exit {probe.returncode}'}); "
            "the kernel may forbid user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
            f"user.max_user_namespaces > 0). Or opt in to running code with your own rights: {MODE_ENV}=unsafe")
    return tuple(command)


def _bwrap_arguments(bwrap: str) -> list[str]:
    python_home = os.path.realpath(sys.base_prefix)
    command = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session",
               "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
               "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
               "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
               "--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm",
               "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
    if not python_home.startswith("/usr/"):
        # its folders are made readable on the way (a home folder is often 0700), holding nothing but the path
        parts = python_home.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            command += ["--perms", "0755", "--dir", "/" + "/".join(parts[:i + 1])]
        command += ["--ro-bind", python_home, python_home]
    if os.geteuid() == 0:
        # as root, bwrap makes the namespaces itself; setpriv then becomes nobody with no capability left
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        return command + ["--", setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          "--inh-caps=-all", "--bounding-set=-all"]
    # as a user, a user namespace of its own maps nobody to the caller: no capability outside it
    return command + ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--"]


def _interpreter() -> str:
    """This Python's real binary (a venv's python is a link to it): the standard library comes with it."""
    return os.path.realpath(sys.executable)


def _limit(limits: Limits):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _run(command: list[str], program: str, timeout: float, limits: Limits) -> SandboxResult:
    """Start the tree in a session of its own, feed it the program, kill the whole session at the timeout.
    Its output goes to unlinked temp files, bounded by the file-size limit, never to memory."""
    with tempfile.TemporaryDirectory(prefix="engine-sandbox-") as cwd, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=cwd, env={},
                                start_new_session=True, preexec_fn=_limit(limits))
        try:
            proc.communicate(program.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            return SandboxResult(False, "timed out")
        except BaseException:
            _kill_tree(proc)
            raise
        finally:
            _kill_tree(proc)  # a child that left its session behind dies with the namespace; this is the rest
        err.seek(0)
        stderr = err.read()[-OUTPUT_TAIL:].decode("utf-8", "replace")
    if proc.returncode == 0:
        return SandboxResult(True, "passed")
    if proc.returncode < 0:
        return SandboxResult(False, f"killed by {signal.Signals(-proc.returncode).name}")
    return SandboxResult(False, _last_line(stderr) or f"exit code {proc.returncode}")


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@functools.lru_cache(maxsize=1)
def _warn_unsafe() -> None:
    warnings.warn(f"{MODE_ENV}=unsafe: model-written code runs WITHOUT an operating-system sandbox, with your "
                  "user's rights over your files and the network; only an empty environment, resource limits and a "
                  "timeout apply", RuntimeWarning, stacklevel=3)
