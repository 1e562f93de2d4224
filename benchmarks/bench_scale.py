"""Cost that stays flat as the work grows: time and memory per trial at 20 vs 300 trials, per data point at 100
vs 5,000 points, a cache hit in a cache of 1,000,000 entries vs 1,000, and the driver's memory after a 300-trial
tune. Tracking is off (the Tuner is driven directly); the loopback server runs in a process of its own.

`.venv/bin/python -m benchmarks.bench_scale` prints the lines `make bench` prints for it.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import platform
import random
import tempfile
import time

import lmdb
import orjson

from engine import Completion
from engine.session import Session
from engine.tuning import Tuner, TuneSpec
from engine.tuning import tuner as tuner_module

from .common import fake_server_process, interleaved_us, register_fake_model

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20


def rss() -> int:
    """This process's resident set size now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def points(count: int) -> list[dict]:
    return [{"question": f"What is {i % 97} + {i // 97}?", "answer": i % 97 + i // 97} for i in range(count)]


def eval_func(responses, **point):
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


class _TimedRunner(tuner_module.SequentialTrialRunner):
    """The tuner's FLAML runner, timing the CPU of each suggestion (FLAML's own work, on the event loop's
    thread)."""

    suggest_s: list[float] = []

    def step(self):
        start = time.thread_time()
        try:
            return super().step()
        finally:
            self.suggest_s.append(time.thread_time() - start)


SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the tunes' caches: fsync waits on a shared disk
# are a constant per request that only adds noise to the ratios (the cache bench below is on the disk)


def tune_run(base_url: str, data: list[dict], num_samples: int) -> dict:
    """One tune on a fresh cache: every trial asks one completion of 16 tokens per point with its own sampled
    temperature or top_p (continuous: no two trials share a request), so each trial costs the same work."""
    marks: list[tuple[float, float, int]] = []  # (wall, this process's CPU, RSS) as each trial is reported

    def mark(record) -> None:
        marks.append((time.perf_counter(), time.process_time(), rss()))

    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp, Session(cache_path=tmp) as session:
        model = register_fake_model(session.catalog, base_url)
        spec = TuneSpec(data, "success", "max", eval_func, optimization_budget=1000.0, num_samples=num_samples,
                        progress=False, space={"model": model, "prompt": "{question}", "max_tokens": 16, "n": 1})
        tuner = Tuner(spec, session.requester, 41, on_trial=mark)
        suggest_s, plain = [], tuner_module.SequentialTrialRunner
        _TimedRunner.suggest_s, tuner_module.SequentialTrialRunner = suggest_s, _TimedRunner
        try:
            mark(None)
            tuner.run()
        finally:
            tuner_module.SequentialTrialRunner = plain
        first, last = marks[0], marks[-1]
        return {"wall_s": last[0] - first[0], "cpu_s": last[1] - first[1], "trials": len(tuner.trials),
                "marks": marks, "points": sum(t.data_used for t in tuner.trials), "end_rss": rss(),
                "rss_growth": max(m[2] for m in marks) - first[2], "suggest_s": suggest_s,
                "requests": sum(t.requests for t in tuner.trials)}


def _per_trial(marks: list[tuple], first: int, last: int, field: int) -> float:
    """Seconds (wall: field 0, CPU: field 1) per trial over reported trials first..last (1-based)."""
    return (marks[last][field] - marks[first - 1][field]) / (last - first + 1)


def trials_scaling(small: int = 20, large: int = 300, data_points: int = 8, window: int = 50) -> dict:
    """Per-trial time and memory at `small` vs `large` trials on the same space and data; within the large
    run, its last `window` trials vs the `window` after its first `small` (past the start): cost grown with
    the trials done."""
    data = points(data_points)
    with fake_server_process() as base_url:
        tune_run(base_url, data, 4)  # warm imports, FLAML, the connection pool
        runs = {n: tune_run(base_url, data, n) for n in (small, large)}
    for r in runs.values():
        r["wall_ms"] = r["wall_s"] / r["trials"] * 1000
        r["cpu_ms"] = r["cpu_s"] / r["trials"] * 1000
        r["rss_kb"] = r["rss_growth"] / r["trials"] / 1024
    big, n = runs[large], runs[large]["trials"]
    early, late = (small + 1, small + window), (n - window + 1, n)
    out = {"runs": runs, "small": small, "large": large, "early": early, "late": late}
    for name, (a, b) in (("early", early), ("late", late)):
        out[f"{name}_wall_ms"] = _per_trial(big["marks"], a, b, 0) * 1000
        out[f"{name}_cpu_ms"] = _per_trial(big["marks"], a, b, 1) * 1000
        out[f"{name}_suggest_ms"] = sum(big["suggest_s"][a - 1:b]) / (b - a + 1) * 1000
    # memory kept per trial once warm: RSS growth from trial `small` to the last
    out["late_kb_per_trial"] = (big["marks"][-1][2] - big["marks"][small][2]) / (n - small) / 1024
    out["wall_ratio"] = big["wall_ms"] / runs[small]["wall_ms"]
    out["cpu_ratio"] = big["cpu_ms"] / runs[small]["cpu_ms"]
    out["driver_rss_mb"] = big["end_rss"] / MB
    return out


def data_scaling(small: int = 100, large: int = 5000, repeats: int = 3) -> dict:
    """Per-data-point time and memory at `small` vs `large` points, one trial each (the `small` one: the median
    of `repeats` runs, it is short)."""
    with fake_server_process() as base_url:
        tune_run(base_url, points(small), 1)  # warm up
        few = sorted((tune_run(base_url, points(small), 1) for _ in range(repeats)), key=lambda r: r["cpu_s"])
        runs = {small: few[len(few) // 2], large: tune_run(base_url, points(large), 1)}
    for r in runs.values():
        r["wall_us"] = r["wall_s"] / r["points"] * 1e6
        r["cpu_us"] = r["cpu_s"] / r["points"] * 1e6
        r["rss_b"] = r["rss_growth"] / r["points"]
    return {"runs": runs, "small": small, "large": large,
            "wall_ratio": runs[large]["wall_us"] / runs[small]["wall_us"],
            "cpu_ratio": runs[large]["cpu_us"] / runs[small]["cpu_us"]}


WORDS = ("The sum of the two numbers is found by adding the ones, carrying the ten, then adding the tens; checking "
         "it by subtracting one number from the result gives the other one back, so the answer above is right.")


def _key(i: int, count: int, batch: int) -> bytes:
    """The i-th filler key: a random 16-byte digest whose first byte puts batch i // batch in a key range of its
    own, so that each batch's transaction rewrites only its own range's pages (in one random order, as
    one-at-a-time inserts fill a B-tree) and the file is not left with every page of the previous batches."""
    batches = -(-count // batch)
    return bytes([i // batch * 256 // batches]) + hashlib.blake2b(i.to_bytes(8, "little"), digest_size=15).digest()


def _fill(cache, count: int, template: dict, batch: int = 100_000) -> tuple[float, int, float]:
    """`count` responses like `template` (a real answer, its text made ~60 words) under random keys, a batch per
    transaction (the map doubles when full, as ResponseCache.put does); returns (seconds, map doublings, mean
    JSON bytes of a response)."""
    env, rng, grown, total = cache._env, random.Random(7), 0, 0
    start = time.perf_counter()
    for first in range(0, count, batch):
        items = []
        for i in range(first, min(count, first + batch)):
            template["id"] = f"chatcmpl-{i}"
            template["choices"][0]["message"]["content"] = f"{rng.randrange(200)} is the answer to question {i}. {WORDS}"
            items.append((_key(i, count, batch), orjson.dumps(template)))
        total += sum(len(v) for _, v in items)
        while True:
            try:
                with env.begin(write=True) as txn:
                    with txn.cursor() as cursor:
                        cursor.putmulti(items)
                break
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)
                grown += 1
    return time.perf_counter() - start, grown, total / max(1, count)


def cache_scaling(small: int = 1000, large: int = 1_000_000, calls: int = 10000) -> dict:
    """Completion.create cache hits and cache.get of random stored keys in caches of `small` and `large`
    entries (two caches of one session, timed in alternating batches so that the machine's drift hits both
    alike); the file size per entry and how the map grew."""
    runs, hits, gets = {}, {}, {}
    config = dict(prompt="What is {a} + {b}?", max_tokens=16, temperature=0.7)
    context = {"a": 3, "b": 4}
    with fake_server_process() as base_url, tempfile.TemporaryDirectory() as tmp, \
            Session(cache_path=tmp) as session:
        config["model"] = register_fake_model(session.catalog, base_url)
        for seed, count in enumerate((small, large), start=1):  # cache {tmp}/{seed}
            response = Completion.create(context=context, seed=seed, **config)  # the one miss: a real answer
            cache = session.requester.caches.for_seed(seed)
            map_before = cache._env.info()["map_size"]
            template = dict(response, choices=[dict(response["choices"][0],
                                                    message=dict(response["choices"][0]["message"]))])
            fill_s, grown, value_bytes = _fill(cache, count - 1, template)
            stat, size = cache._env.stat(), os.path.getsize(os.path.join(cache.path, "data.mdb"))
            tree = (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) * stat["psize"]
            runs[count] = {"entries": len(cache), "fill_s": fill_s, "file_mb": size / MB,
                           "file_b_per_entry": size / len(cache), "tree_b_per_entry": tree / len(cache),
                           "value_bytes": value_bytes, "map_before_mb": map_before / MB,
                           "map_after_mb": cache._env.info()["map_size"] / MB, "doublings": grown,
                           "depth": stat["depth"]}
            hits[count] = lambda seed=seed: Completion.create(context=context, seed=seed, **config)
            keys = itertools.cycle([_key(i, count - 1, 100_000)
                                    for i in random.Random(3).sample(range(count - 1), min(calls, count - 1))])
            gets[count] = lambda cache=cache, keys=keys: cache.get(next(keys))
        runs[small]["hit_us"], runs[large]["hit_us"] = interleaved_us(hits[small], hits[large], calls)
        runs[small]["get_us"], runs[large]["get_us"] = interleaved_us(gets[small], gets[large], calls * 2, batch=100)
    return {"runs": runs, "small": small, "large": large,
            "hit_ratio": runs[large]["hit_us"] / runs[small]["hit_us"],
            "get_ratio": runs[large]["get_us"] / runs[small]["get_us"]}


def print_trials(trials: dict) -> None:
    small, large = trials["small"], trials["large"]
    print(f"\n## cost as the trials grow: {small} vs {large} trials (8 points, one request each), loopback server, "
          "tracking off")
    for r in trials["runs"].values():
        print(f"  {r['trials']:4d} trials: {r['wall_s']:6.1f} s, {r['wall_ms']:6.1f} ms/trial wall, "
              f"{r['cpu_ms']:6.1f} ms/trial CPU, RSS +{r['rss_kb']:.0f} KB/trial ({r['requests']} requests)")
    print(f"  per trial, {large} / {small} trials             wall {trials['wall_ratio']:5.2f}x, "
          f"CPU {trials['cpu_ratio']:5.2f}x")
    (a, b), (c, d) = trials["early"], trials["late"]
    print(f"  trials {c}-{d} / trials {a}-{b} of that tune    wall {trials['late_wall_ms'] / trials['early_wall_ms']:5.2f}x, "
          f"CPU {trials['late_cpu_ms'] / trials['early_cpu_ms']:5.2f}x   ({trials['late_cpu_ms']:.1f} vs "
          f"{trials['early_cpu_ms']:.1f} ms CPU/trial)")
    rest_early = trials["early_cpu_ms"] - trials["early_suggest_ms"]
    rest_late = trials["late_cpu_ms"] - trials["late_suggest_ms"]
    print(f"    FLAML's suggestion (its TPE global search reads every trial done): {trials['early_suggest_ms']:.1f} -> "
          f"{trials['late_suggest_ms']:.1f} ms CPU/trial")
    print(f"    the rest (requests, scoring, bookkeeping): {rest_early:.1f} -> {rest_late:.1f} ms CPU/trial, "
          f"{rest_late / rest_early:.2f}x")
    print(f"  RSS kept per trial after trial {small}: {trials['late_kb_per_trial']:.1f} KB; driver RSS at the end of "
          f"the {large}-trial tune: {trials['driver_rss_mb']:.0f} MB")


def print_data(data: dict) -> None:
    ds, dl = data["runs"][data["small"]], data["runs"][data["large"]]
    print(f"\n## cost as the data grows: {data['small']} vs {data['large']} points, one trial each")
    for n, r in ((data["small"], ds), (data["large"], dl)):
        print(f"  {n:5d} points: {r['wall_s']:6.1f} s, {r['wall_us']:6.0f} us/point wall, {r['cpu_us']:6.0f} us/point "
              f"CPU, RSS +{r['rss_b'] / 1024:.1f} KB/point ({r['points']} points answered)")
    print(f"  per point, {data['large']} / {data['small']} points         wall {data['wall_ratio']:5.2f}x, "
          f"CPU {data['cpu_ratio']:5.2f}x")


def print_cache(cache: dict) -> None:
    cs, cl = cache["runs"][cache["small"]], cache["runs"][cache["large"]]
    print(f"\n## a cache hit in a cache of {cache['large']:,} entries vs {cache['small']:,} "
          f"(responses of {cl['value_bytes']:.0f} bytes as JSON)")
    for r in (cs, cl):
        print(f"  {r['entries']:9,d} entries: Completion.create hit {r['hit_us']:6.2f} us, cache.get of a random "
              f"key {r['get_us']:5.2f} us, B-tree depth {r['depth']}")
        print(f"  {'':19}file {r['file_mb']:7.1f} MB ({r['file_b_per_entry']:.0f} B/entry; B-tree pages "
              f"{r['tree_b_per_entry']:.0f} B/entry), map {r['map_before_mb']:.0f} -> {r['map_after_mb']:.0f} MB "
              f"({r['doublings']} doublings), filled in {r['fill_s']:.1f} s")
    print(f"  hit, {cache['large']:,} / {cache['small']:,} entries    create {cache['hit_ratio']:5.2f}x, "
          f"cache.get {cache['get_ratio']:5.2f}x")


def run_all() -> None:
    """Measure and print each part as it ends (what `make bench` runs)."""
    print_trials(trials_scaling())
    print_data(data_scaling())
    print_cache(cache_scaling())


def main() -> None:
    start = time.perf_counter()
    print(f"machine: {platform.machine()}, python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    run_all()
    print(f"\n(bench_scale took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
