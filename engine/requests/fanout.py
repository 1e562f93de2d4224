"""`n` means n choices everywhere: for providers that ignore it, one call per choice, merged.

Each choice is its own cache entry (keyed by its index, not by `n`), so asking for more choices later
reuses the ones already paid for: the n-doubling of the tuner and a later `test` both profit.
"""
from __future__ import annotations

import hashlib


def fanout_seed(seed: int | str, i: int) -> int:
    """A distinct, reproducible sampler seed for choice `i` of a request made under cache seed `seed`."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=4).digest(), "big") >> 1


def part_key(key: bytes, i: int) -> bytes:
    """Cache key of choice `i` of a request whose (n-free) digest is `key`."""
    return key if i == 0 else hashlib.blake2b(key + i.to_bytes(4, "big"), digest_size=16).digest()


def split(payload: dict, key: bytes, seed: int | str, offset: int = 0) -> tuple[tuple[dict, bytes], ...]:
    """(payload, key) per choice `offset .. offset + n - 1`, each with its own sampler seed."""
    n = payload.get("n", 1) or 1
    base = {k: v for k, v in payload.items() if k != "n"}
    return tuple((dict(base, seed=fanout_seed(seed, i)), part_key(key, i)) for i in range(offset, offset + n))


def merge_responses(parts: list[dict]) -> dict:
    """Merge responses into one whose choices are re-indexed 0..n-1 and whose usage is summed."""
    if len(parts) == 1:
        return parts[0]
    merged = dict(parts[0])
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for part in parts:
        for choice in part["choices"]:
            choices.append(dict(choice, index=len(choices)))
        for k in usage:
            usage[k] += (part.get("usage") or {}).get(k, 0) or 0
    merged["choices"] = choices
    merged["usage"] = usage
    return merged
