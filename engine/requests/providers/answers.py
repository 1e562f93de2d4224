"""A provider's answer, checked before anyone uses, caches or pays for it.

The engine posts its own JSON body and reads the raw bytes back (the openai SDK's typed models would cost
more CPU than the rest of the request path together), so the shape is checked here: JSON, a non-empty list
of choices, and a `usage` of non-negative integers, without which the answer's cost is unknown. A bad answer
raises a ProviderError that names the endpoint and the cause, and is never cached. It came with HTTP 200, so
the provider may well have billed it: it is marked `possibly_billed`, and the budget keeps its worst case.
"""
from __future__ import annotations

import orjson

from ...core.errors import ProviderError

USAGE_FIELDS = ("prompt_tokens", "completion_tokens")


def parse_answer(raw: bytes, endpoint: str) -> dict:
    """The answer as a dict, or a ProviderError saying what is wrong with it."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        head = raw[:120].decode("utf-8", "replace")
        raise bad(f"the answer is not JSON ({exc}); it begins {head!r}", endpoint) from None
    if not isinstance(answer, dict):
        raise bad(f"the answer is a JSON {type(answer).__name__}, not an object", endpoint)
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise bad("the answer has no choices", endpoint)
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        raise bad("the answer has no usage: its cost cannot be known, so it is not used", endpoint)
    for field in USAGE_FIELDS:
        value = usage.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"the answer's usage.{field} is {value!r}, not a number of tokens", endpoint)
    return answer


def bad(cause: str, endpoint: str) -> ProviderError:
    error = ProviderError(f"bad answer: {cause}", endpoint, status=None, retryable=False)
    error.possibly_billed = True  # it came with HTTP 200
    return error
