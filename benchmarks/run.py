"""`make bench`: every speed figure the README quotes comes from here, measured in one run."""
from __future__ import annotations

import platform

from .bench_requests import cache_hit_latency, overhead_over_raw_openai


def main() -> None:
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    hit = cache_hit_latency()
    print("\n## cache hit: Completion.create vs the LMDB floor (best of 5 x 20000 calls)")
    print(f"  Completion.create, cache hit       {hit['create_hit_us']:8.2f} us/call")
    print(f"  digest + lmdb get + json decode    {hit['digest_get_decode_us']:8.2f} us/call")
    print(f"  raw lmdb get of the same entry     {hit['raw_lmdb_get_us']:8.2f} us/call")
    print(f"  ratio create / raw get             {hit['create_hit_us'] / hit['raw_lmdb_get_us']:8.1f}x"
          f"   (requests sent to the server: {hit['requests_sent']})")
    over = overhead_over_raw_openai(600)
    print("\n## engine overhead over a raw openai call to the same loopback server (medians of alternating batches, 600 calls each)")
    print(f"  raw openai client                  {over['raw_openai_us']:8.1f} us/call")
    print(f"  Completion.create, use_cache=False {over['engine_no_cache_us']:8.1f} us/call")
    print(f"  overhead                           {over['overhead_pct']:8.1f} %")


if __name__ == "__main__":
    main()
