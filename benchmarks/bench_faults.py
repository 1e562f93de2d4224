"""`make bench-faults`: the money figures under faults, counted by the loopback server itself.

1. Faults injected and survived: ~15% of requests answered 429/500/503 and ~5% stalled past the client's
   timeout (the server still bills those), against a fault-free run: same best config, budget held.
2. kill -9 mid-tune, then the same command again: how many requests were paid a second time.
3. Four processes tuning on one cache at once: how many answers were paid twice.
4. Reconciliation: the engine's dollars against the server's token count x price.
5. Bad answers: every answer an HTTP 200 the engine cannot use, which the server bills in full anyway.
6. The sandbox of model-written code: the escape battery of tests/support/escapes.py, and how many got out.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import FakeOpenAI
from .fault_tune import BUDGET, PRICE, tune
from tests.support.escapes import run_battery
from tests.support.fake_openai import count_tokens, landscape_responder
from engine.core.errors import EngineError
from engine.tasks.sandbox import run_python

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 1.0


def fault_rule(i: int) -> dict | None:
    """A fixed, spread-out pattern: 15 in 100 requests get an HTTP error, 5 in 100 stall past the timeout."""
    slot = (i * 37) % 100
    if slot < 5:
        return {"stall": TIMEOUT * 2}
    if slot < 20:
        return {"status": (429, 500, 503)[slot % 3]}
    return None


def billed(fake: FakeOpenAI) -> float:
    return fake.billed(PRICE["prompt"], PRICE["completion"])


def faults_survived() -> dict:
    runs = {}
    for name, rule in (("fault-free", None), ("faulty", fault_rule)):
        with FakeOpenAI(latency=0.02, responder=landscape_responder) as fake, tempfile.TemporaryDirectory() as tmp:
            fake.fault_rule = rule
            result = tune(fake.base_url, tmp, TIMEOUT)
            time.sleep(TIMEOUT * 2)  # stalled answers are still being made, and billed
            faults = sum(1 for i in range(len(fake.requests)) if rule and rule(i))
            runs[name] = {**result, "billed": billed(fake), "requests": len(fake.requests), "faults": faults}
    return runs


def tune_process(base_url: str, cache: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.fault_tune", base_url, cache], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_and_rerun(after_s: float = 4.0) -> dict:
    with FakeOpenAI(latency=0.2, responder=landscape_responder) as fake, tempfile.TemporaryDirectory() as tmp:
        proc = tune_process(fake.base_url, tmp)
        while sum(1 for r in fake.requests if "usage" in r) < 40 and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(after_s)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        before = len(fake.requests)
        rerun = tune_process(fake.base_url, tmp)
        out, err = rerun.communicate(timeout=600)
        if rerun.returncode != 0:
            raise SystemExit(f"the rerun failed:\n{err[-2000:]}")
        return {"answered_before_kill": sum(1 for r in fake.requests[:before] if "usage" in r),
                "repaid": fake.paid_twice(), "rerun_requests": len(fake.requests) - before,
                "billed": billed(fake), **json.loads(out.strip().splitlines()[-1])}


def four_processes() -> dict:
    with FakeOpenAI(latency=0.05, responder=landscape_responder) as fake, tempfile.TemporaryDirectory() as tmp:
        procs = [tune_process(fake.base_url, tmp) for _ in range(4)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, outs):
            if p.returncode != 0:
                raise SystemExit(f"a racing tune failed:\n{err[-2000:]}")
        answered = sum(1 for r in fake.requests if "usage" in r)
        return {"answered": answered, "paid_twice": fake.paid_twice()}


def billed_in_full(body: dict) -> dict:
    """The most the server can bill for a request: its prompt, and max_tokens of completion."""
    prompt = " ".join(m["content"] for m in body.get("messages", [])) or body.get("prompt", "")
    return {"prompt_tokens": count_tokens(prompt), "completion_tokens": int(body.get("max_tokens") or 0)}


BAD_BODIES = [b"<html>502 Bad Gateway</html>", b'{"choices": [{"index": 0, "message": {"content": "3"}}]}',
              b'{"choices": [], "usage": {"prompt_tokens": -5, "completion_tokens": 2}}']


def bad_answers(budget: float = 0.01) -> dict:
    with FakeOpenAI(responder=landscape_responder) as fake, tempfile.TemporaryDirectory() as tmp:
        fake.fault_rule = lambda i: {"body": BAD_BODIES[i % len(BAD_BODIES)], "bill": billed_in_full}
        try:
            tune(fake.base_url, tmp, TIMEOUT, budget=budget)
            ended = "finished"
        except EngineError as exc:
            text = str(exc).removeprefix(f"{getattr(exc, 'endpoint', '')}: ")
            ended = f"stopped: {text.split(';')[0].split(', each')[0]}"
        fake.wait_idle()
        return {"requests": len(fake.requests), "billed": billed(fake), "budget": budget, "ended": ended}


def sandbox_escapes() -> list[tuple[str, bool, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        return run_battery(Path(tmp), run_python)


def main() -> None:
    print(f"## faults, counted server-side (budget ${BUDGET:g}, client timeout {TIMEOUT:g} s)", flush=True)
    runs = faults_survived()
    clean, faulty = runs["fault-free"], runs["faulty"]
    for name, r in runs.items():
        print(f"  {name:10} {r['requests']:4d} requests, {r['faults']:3d} faults, {r['trials']} trials; engine paid "
              f"${r['paid']:.6f} + ${r['unanswered']:.6f} possibly billed unanswered ({r['unanswered_requests']}); "
              f"server billed ${r['billed']:.6f}")
    print(f"  same best config: {clean['best'] == faulty['best']}; budget held: {faulty['billed'] <= BUDGET}; "
          f"reconciliation (fault-free): engine/server = {clean['paid'] / clean['billed'] * 100:.2f} %", flush=True)
    k = kill_and_rerun()
    print(f"  kill -9 after {k['answered_before_kill']} answers, then rerun: {k['repaid']} requests paid twice, "
          f"{k['rerun_requests']} sent by the rerun, server billed ${k['billed']:.6f} in all", flush=True)
    race = four_processes()
    print(f"  4 processes on one cache: {race['paid_twice']} of {race['answered']} answers paid twice", flush=True)
    bad = bad_answers()
    print(f"  bad answers: {bad['requests']} HTTP 200s the engine cannot use, each billed in full by the server: "
          f"billed ${bad['billed']:.6f} <= cap ${bad['budget']:g}: {bad['billed'] <= bad['budget']} ({bad['ended']})",
          flush=True)
    escapes = sandbox_escapes()
    got_out = [name for name, escaped, _ in escapes if escaped]
    print(f"  sandbox escapes tried: {len(escapes)}, succeeded: {len(got_out)}" + (f" ({', '.join(got_out)})"
                                                                                  if got_out else ""))


if __name__ == "__main__":
    main()
