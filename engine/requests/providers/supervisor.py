"""`python -m engine.requests.providers.supervisor ... -- SERVER COMMAND`: the parent of the embedded llama.cpp server.

The embedded server is shared by every process of a machine and outlives the one that started it, so no
user process can wait for it. This small parent does, and so it can say what the users cannot see:

- how the server ended: one line appended to the server's log and an exit record (JSON) naming the exit
  code, or the signal by name (`SIGILL (Illegal instruction)`), which a user process reads when its
  requests start failing;
- that nobody uses it any more: every user process holds a shared lock on the users' lock file, and the
  kernel drops it when the process dies, even by SIGKILL, which skips `atexit`. When no process has held it
  for `--idle-timeout` seconds, the server is stopped and its state file removed, so a server whose users
  were all killed is not left running for hours.

It runs in a session of its own (a Ctrl-C meant for a user's job spares it); SIGTERM stops the server.
Standard library only, and imports nothing of the engine: it must start fast and never fail on import.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def describe_exit(returncode: int) -> str:
    """'exit code 1' or 'signal SIGILL (Illegal instruction)'."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        sig = signal.Signals(-returncode)
        return f"signal {sig.name} ({signal.strsignal(sig) or 'unknown'})"
    except ValueError:
        return f"signal {-returncode}"


def nobody_uses(start_lock: Path, users_lock: Path) -> bool:
    """True when no process holds the users' lock. Checked under the start lock: a process joins by taking
    the users' lock first and the start lock second, so it is either seen here or finds no server after.
    Never waits: a start lock held by another process means someone is starting or joining (in use), and
    this loop must stay free to notice the server's death while its starter waits for it to answer."""
    start = os.open(start_lock, os.O_RDWR | os.O_CREAT, 0o600)
    users = os.open(users_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(start, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(users, fcntl.LOCK_UN)
        return True
    finally:
        os.close(users)
        os.close(start)  # releases the start lock too


def forget_state(state: Path) -> None:
    """Remove the state file if it still names this supervisor (a newer server may have replaced it)."""
    try:
        if json.loads(state.read_text()).get("pid") == os.getpid():
            state.unlink()
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--exit-record", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--start-lock", type=Path, required=True)
    parser.add_argument("--users-lock", type=Path, required=True)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    log = open(args.log, "ab", buffering=0)

    def note(line: str) -> None:
        log.write(f"[engine supervisor {time.strftime('%H:%M:%S')}] {line}\n".encode())

    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    note(f"started the server, pid {server.pid}: {' '.join(command)}")
    stop_reason: list[str] = []

    def stop(signum, _frame) -> None:
        stop_reason.append(f"asked to stop ({signal.Signals(signum).name})")
        server.terminate()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    started, idle_since = time.monotonic(), None
    while True:
        try:
            returncode = server.wait(timeout=args.poll)
            break
        except subprocess.TimeoutExpired:
            pass
        if stop_reason:
            continue
        if nobody_uses(args.start_lock, args.users_lock):
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= args.idle_timeout:
                stop_reason.append(f"no process has used it for {args.idle_timeout:g} s")
                forget_state(args.state)
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
        else:
            idle_since = None
    how = describe_exit(returncode)
    uptime = time.monotonic() - started
    record = {"server_pid": server.pid, "returncode": returncode, "how": how, "uptime_s": round(uptime, 1),
              "requested": "; ".join(stop_reason) or None, "log": str(args.log), "time": time.time()}
    tmp = args.exit_record.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, args.exit_record)
    note(f"the server exited by {how} after {uptime:.1f} s" + (f": {stop_reason[0]}" if stop_reason else ""))
    if stop_reason:
        forget_state(args.state)
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main())
