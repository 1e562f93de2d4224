"""Shared benchmark helpers: the loopback server fixture and a timer."""
from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.support.fake_openai import FakeOpenAI  # the tests' loopback OpenAI-compatible server

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["FakeOpenAI", "fake_server_process", "interleaved_us", "per_call_us", "register_fake_model"]


@contextlib.contextmanager
def fake_server_process(latency: float = 0.0, landscape: bool = False, ignore_n: bool = False, *options: str):
    """The loopback server in a process of its own; yields its base_url (GET {base_url}/stats: what it billed).
    `options`: more of its command-line options (e.g. "--max-in-flight", "12")."""
    cmd = [sys.executable, "-m", "tests.support.fake_openai", "--latency", str(latency)] \
        + (["--landscape"] if landscape else []) + (["--ignore-n"] if ignore_n else []) + list(options)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # `tests` is importable from ROOT
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def per_call_us(fn, calls: int, repeats: int = 5) -> float:
    """Best-of-`repeats` mean time per call, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def interleaved_us(a, b, calls: int, batch: int = 25, clock=time.perf_counter) -> tuple[float, float]:
    """Per-call microseconds of `a` and `b`, run in alternating batches so that drift hits both alike;
    each figure is the median over its batches. `clock=time.process_time` counts this process's CPU only."""
    times_a, times_b = [], []
    for _ in range(max(1, calls // batch)):
        for fn, out in ((a, times_a), (b, times_b)):
            start = clock()
            for _ in range(batch):
                fn()
            out.append((clock() - start) / batch)
    return statistics.median(times_a) * 1e6, statistics.median(times_b) * 1e6


def register_fake_model(catalog, base_url: str, name: str = "bench-chat") -> str:
    catalog.add({"name": name, "provider": "compatible", "chat": True, "base_url": base_url,
                 "price_per_1k": {"prompt": 0.00015, "completion": 0.0006}})
    return name
