"""List prices of hosted models without a file in conf/model/, from the maintained `genai-prices` table.

A model the table does not know has no price here (None): the caller must then say the cost is unknown,
never guess it. A file in conf/model/ always wins over this table (the catalog asks here only after it).

Behind it, `RETIRED`: OpenAI models retired before genai-prices began (or listed there under Azure only),
at the list prices pyautogen 0.1.x priced them with (its `oai_price1K`, from openai.com/pricing at the time),
so that 0.1.x code naming them, and old logs, cost what they cost.
"""
from __future__ import annotations

import functools

# USD per 1K tokens (prompt, completion), as pyautogen 0.1.14's table had them
RETIRED = {
    "text-ada-001": (0.0004, 0.0004), "text-babbage-001": (0.0005, 0.0005), "text-curie-001": (0.002, 0.002),
    "text-davinci-002": (0.02, 0.02), "text-davinci-003": (0.02, 0.02), "code-cushman-001": (0.024, 0.024),
    "code-davinci-002": (0.1, 0.1), "gpt-3.5-turbo-0301": (0.0015, 0.002), "gpt-35-turbo-0301": (0.0015, 0.002),
    "gpt-3.5-turbo-0613": (0.0015, 0.002), "gpt-3.5-turbo-16k-0613": (0.003, 0.004),
    "gpt-4-0314": (0.03, 0.06), "gpt-4-32k": (0.06, 0.12), "gpt-4-32k-0314": (0.06, 0.12),
    "gpt-4-0613": (0.03, 0.06), "gpt-4-32k-0613": (0.06, 0.12),
}
# api_type spellings of the seed library -> genai-prices provider ids
_PROVIDERS = {"azure": "azure", "openai": "openai"}


@functools.lru_cache(maxsize=256)
def list_price_per_1k(model: str, api_type: str | None = None) -> dict | None:
    """{"prompt": USD, "completion": USD} per 1K tokens of `model` (as served by `api_type`), or None."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # the table is optional: without it only conf/model/ and retired prices are known
        return _retired(model)
    provider = _PROVIDERS.get(api_type or "")
    for provider_id in ((provider, None) if provider else (None,)):
        try:
            price = calc_price(Usage(input_tokens=1000, output_tokens=1000), model_ref=model, provider_id=provider_id)
        except LookupError:
            continue
        return {"prompt": float(price.input_price), "completion": float(price.output_price)}
    return _retired(model)


def _retired(model: str) -> dict | None:
    price = RETIRED.get(model)
    return {"prompt": price[0], "completion": price[1]} if price else None
