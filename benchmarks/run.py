"""`make bench`: every speed figure the README quotes comes from here, measured in one run."""
from __future__ import annotations

import platform

from .bench_requests import cache_hit_latency, overhead_over_raw_openai
from .bench_scale import run_all as scale_ratios
from .bench_tracking import tracking_overhead
from .bench_tune import concurrency_speedup, ray_vs_local


def main() -> None:
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    hit = cache_hit_latency()
    print("\n## cache hit: Completion.create vs the LMDB floor (best of 5 x 20000 calls)")
    print(f"  Completion.create, cache hit       {hit['create_hit_us']:8.2f} us/call")
    print(f"  digest + lmdb get + json decode    {hit['digest_get_decode_us']:8.2f} us/call")
    print(f"  raw lmdb get of the same entry     {hit['raw_lmdb_get_us']:8.2f} us/call")
    print(f"  ratio create / raw get             {hit['create_hit_us'] / hit['raw_lmdb_get_us']:8.1f}x"
          f"   (requests sent to the server: {hit['requests_sent']})")
    over = overhead_over_raw_openai(2000)
    print("\n## engine overhead over a raw openai call to the same loopback server (medians of alternating batches, 2000 calls each)")
    print(f"  raw openai client                  {over['raw_openai_us']:8.1f} us/call")
    print(f"  Completion.create, use_cache=False {over['engine_no_cache_us']:8.1f} us/call")
    print(f"  overhead (wall time)               {over['overhead_pct']:8.1f} %")
    print(f"  client CPU per call: raw {over['raw_cpu_us']:.0f} us, engine {over['engine_cpu_us']:.0f} us "
          f"(+{over['engine_cpu_us'] - over['raw_cpu_us']:.0f} us)")
    tune = concurrency_speedup()
    print(f"\n## tune wall time, concurrency 8 vs 1, loopback server adding {tune['latency'] * 1000:.0f} ms per request")
    for c, r in sorted(tune["runs"].items(), reverse=True):
        best = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r["best"].items()}
        print(f"  concurrency {c}: {r['wall_s']:7.2f} s, {r['trials']} trials, paid ${r['paid']:.6f} "
              f"of ${r['budget']:g} budget, best {best}")
    print(f"  speedup                            {tune['speedup']:8.1f}x")
    spread = ray_vs_local()
    print(f"\n## trials per minute, parallel=local vs parallel=ray, loopback server adding "
          f"{spread['latency'] * 1000:.0f} ms per request (Ray start-up and workers' imports {spread['ray_startup_s']:.1f} s, not counted)")
    for name, r in spread["runs"].items():
        print(f"  {name:18} {r['trials_per_min']:7.1f} trials/min ({r['trials']} trials in {r['wall_s']:.1f} s, "
              f"paid ${r['paid']:.6f})")
    print(f"  ratio ray / local                  {spread['ratio']:8.2f}x   (ray / local with as many trials at "
          f"once: {spread['ratio_same_width']:.2f}x)")
    track = tracking_overhead()
    print(f"\n## tracking overhead: the same tune ({track['trials']} trials, {track['points']} points, loopback server "
          "answering at once), tracking=local vs tracking=off (fastest of 2 alternating runs each)")
    for name, r in track["runs"].items():
        print(f"  tracking={name:5}                     {r['wall_s']:7.2f} s ({r['trials']} trials)")
    print(f"  ratio local / off                  {track['ratio']:8.2f}x   (target <= 1.10)")
    scale_ratios()  # cost as trials, data points and cache entries grow (benchmarks/bench_scale.py)


if __name__ == "__main__":
    main()
