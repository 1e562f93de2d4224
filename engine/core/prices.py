"""List prices of hosted models without a file in conf/model/, from the maintained `genai-prices` table.

A model the table does not know has no price here (None): the caller must then say the cost is unknown,
never guess it. A file in conf/model/ always wins over this table (the catalog asks here only after it).
"""
from __future__ import annotations

import functools

# api_type spellings of the seed library -> genai-prices provider ids
_PROVIDERS = {"azure": "azure", "openai": "openai"}


@functools.lru_cache(maxsize=256)
def list_price_per_1k(model: str, api_type: str | None = None) -> dict | None:
    """{"prompt": USD, "completion": USD} per 1K tokens of `model` (as served by `api_type`), or None."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # the table is optional: without it only conf/model/ prices are known
        return None
    provider = _PROVIDERS.get(api_type or "")
    for provider_id in ((provider, None) if provider else (None,)):
        try:
            price = calc_price(Usage(input_tokens=1000, output_tokens=1000), model_ref=model, provider_id=provider_id)
        except LookupError:
            continue
        return {"prompt": float(price.input_price), "completion": float(price.output_price)}
    return None
