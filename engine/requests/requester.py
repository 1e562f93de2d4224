"""One request, end to end: config + context -> templating -> cache lookup -> provider call -> cost.

`prepare` turns a seed-API config into what is actually sent (and its cache key); `Requester` runs it
through the LMDB cache and the provider, trying each `config_list` endpoint in order.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from collections.abc import Mapping  # not typing's: its isinstance is slow (hot path)
from typing import Any

from . import fanout
from .budget import BudgetGuard, worst_case_cost
from .cache import CacheRoot
from ..core.errors import ConfigError, EngineError, MissingCredentialsError, ProviderError
from ..core.digests import request_digest
from ..core.models import ModelCatalog
from .providers import ENDPOINT_KEYS, Endpoint, ProviderClient, resolve_endpoint
from ..core.templates import render, render_messages

# Config keys that steer the engine and are never sent nor part of a cache key.
CONTROL_KEYS = frozenset({"seed", "config_list", "request_timeout", "max_retry_period", "retry_wait_time", "use_cache"})
# Per-call transport settings -> the fields of a PreparedRequest (never part of a cache key).
TRANSPORT_KEYS = {"request_timeout": "timeout", "max_retry_period": "retry_period", "retry_wait_time": "retry_wait"}
_POSITIVE_INT = ("n", "max_tokens")


@dataclass(frozen=True)
class PreparedRequest:
    """A request exactly as it will be sent, with the digest that names it in the cache.

    `parts` are the (payload, cache key) pairs actually sent: one, or one per choice for a provider
    that ignores `n`.
    """

    endpoint: Endpoint
    payload: dict
    key: bytes
    seed: int | str
    parts: tuple[tuple[dict, bytes], ...]
    timeout: float | None = None  # transport settings: never part of the key
    retry_period: float | None = None
    retry_wait: float | None = None
    entry_index: int = 0  # the config_list entry this request was made from (the response's `config_id`)

    @property
    def model(self) -> str:
        return self.endpoint.model


_NO_ENTRIES = ({},)  # no config_list: the config alone


@dataclass(frozen=True)
class Outcome:
    """A response and what it took: dollars actually spent now (cache hits are free) and hits."""

    response: dict
    spent: float
    cache_hits: int
    request: PreparedRequest


def _validate_params(params: dict) -> None:
    for name in _POSITIVE_INT:
        value = params.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    stop = params.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop)):
        raise ConfigError(f"stop must be a string or a list of strings, got {stop!r}")


def prepare(config: Mapping[str, Any], context: Mapping | None, catalog: ModelCatalog, default_seed: int | str,
            force_chat: bool = False, index: int | None = None, offset: int = 0) -> list[PreparedRequest]:
    """Render a config for one context into one prepared request per endpoint (config_list order)."""
    entries = config.get("config_list") or _NO_ENTRIES
    if entries is not _NO_ENTRIES and (not isinstance(entries, (list, tuple))
                                       or not all(isinstance(e, Mapping) for e in entries)):
        raise ConfigError("config_list must be a list of dicts")
    prepared, missing, last = [], [], len(entries) - 1
    for i, entry in enumerate(entries):
        merged = {**config, **entry} if entry else config
        try:
            request = _prepare_one(merged, context, catalog, default_seed, force_chat, index, offset, entry)
        except MissingCredentialsError as exc:  # another endpoint may still serve it
            missing.append(exc)
            continue
        if i < last and "max_retry_period" not in merged:
            request = replace(request, retry_period=0.0)  # as 0.1.x: the next entry at once, the last one retries
        prepared.append(request if i == 0 else replace(request, entry_index=i))
    if not prepared:
        raise missing[-1]
    return prepared


def _prepare_one(config: Mapping[str, Any], context, catalog, default_seed, force_chat, index,
                 offset: int = 0, entry: Mapping | None = None) -> PreparedRequest:
    """`offset` > 0 asks for choices offset.. of the same request: fresh samples, not the first ones again.
    A model without a conf/model file is known from the config_list `entry` that serves it."""
    model = config.get("model")
    if not model:
        raise ConfigError("config has no `model`")
    spec = catalog.get(model, entry or config)
    prompt, messages = config.get("prompt"), config.get("messages")
    if prompt is not None and messages is not None:
        raise ConfigError("give either `prompt` or `messages`, not both")
    if prompt is None and messages is None:
        raise ConfigError("config has neither `prompt` nor `messages`")
    params, overrides = {}, {}
    for k, v in config.items():
        if k in ENDPOINT_KEYS:
            overrides[k] = v
        elif k not in CONTROL_KEYS and k not in ("prompt", "messages", "model"):
            params[k] = v
    _validate_params(params)
    if isinstance(params.get("stop"), tuple):
        params["stop"] = list(params["stop"])
    endpoint = resolve_endpoint(spec, overrides, catalog.endpoints)
    chat = force_chat or endpoint.chat
    if chat != endpoint.chat:
        endpoint = _with_chat(endpoint, chat)
    payload = {"model": endpoint.api_model, **params}
    if messages is not None:
        if not chat:
            raise ConfigError(f"model {model!r} is a text-completion model: give `prompt`, not `messages`")
        payload["messages"] = render_messages(messages, context, index)
    elif chat:
        payload["messages"] = [{"role": "user", "content": render(prompt, context, index)}]
    else:
        payload["prompt"] = render(prompt, context, index)
    seed = config.get("seed", default_seed)
    material = {"endpoint": endpoint.identity(), "chat": chat, "payload": payload, "seed": seed}
    if endpoint.ignores_n:  # one entry per choice, whatever n is
        material["payload"] = {k: v for k, v in payload.items() if k != "n"}
        key = request_digest(material)
        parts = fanout.split(payload, key, seed, offset)
    else:
        if offset:
            material["offset"] = offset
        key = request_digest(material)
        parts = ((payload, key),)
    return PreparedRequest(endpoint, payload, key, seed, parts, **_transport(config))


def _transport(config: Mapping[str, Any]) -> dict:
    out = {}
    for key in TRANSPORT_KEYS.keys() & config.keys():
        value, field_name = config[key], TRANSPORT_KEYS[key]
        if value is None:
            continue
        zero_ok = key != "request_timeout"  # a retry period of 0: one attempt, no retry (as 0.1.x)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value < 0 or (value == 0 and not zero_ok):
            raise ConfigError(f"{key} must be a number of seconds {'>= 0' if zero_ok else '> 0'}, got {value!r}")
        out[field_name] = float(value)
    return out


def _with_chat(endpoint: Endpoint, chat: bool) -> Endpoint:
    return replace(endpoint, chat=chat)


class Requester:
    """Runs prepared requests through the cache and the provider; owns no per-run state."""

    def __init__(self, catalog: ModelCatalog, caches: CacheRoot, providers: ProviderClient):
        self.catalog = catalog
        self.caches = caches
        self.providers = providers
        self._in_flight: dict[tuple[int, bytes], asyncio.Future] = {}  # requests being answered right now

    def for_run(self) -> "Requester":
        """A requester bound to today's cache root, so that a later `set_cache` cannot move a running tune."""
        clone = Requester(self.catalog, self.caches, self.providers)
        clone._in_flight = self._in_flight  # still one answer per identical request in this process
        return clone

    def cost(self, model: str, response: dict) -> float:
        return self.catalog.cost(model, response.get("usage"))

    def run(self, requests: list[PreparedRequest], use_cache: bool = True) -> Outcome:
        """The sync API: a response the cache holds in full is returned here, without leaving the thread
        (the ~20 us path); anything else runs `arun` on the loop thread. Ctrl-C waits for the request in
        flight so that what it pays for is cached (a second Ctrl-C abandons it)."""
        if use_cache:
            first = requests[0]
            cache = self.caches.for_seed(first.seed)
            hits = []
            for _, key in first.parts:
                hit = cache.get(key)
                if hit is None:
                    break
                hits.append(hit)
            else:
                return Outcome(fanout.merge_responses(hits), 0.0, len(hits), first)
        return self.providers.loop.run(self.arun(requests, use_cache), on_interrupt=lambda: None)

    async def arun(self, requests: list[PreparedRequest], use_cache: bool = True,
                   budget: BudgetGuard | None = None) -> Outcome:
        """Cache hit, or the first endpoint that answers (config_list order). The parts of one request that
        the cache lacks are sent concurrently, and a request identical to one already in flight waits for
        that answer instead of paying again.

        `Outcome.spent` counts every dollar paid, including choices paid on an endpoint that then failed
        (they are cached too); if all endpoints fail, the error carries that amount as `.spent`.
        """
        errors, wasted = [], 0.0
        for request in requests:
            cache = self.caches.for_seed(request.seed) if use_cache else None
            cached = [cache.get(key) if cache is not None else None for _, key in request.parts]
            missing = [part for part, hit in zip(request.parts, cached, strict=True) if hit is None]
            results = await asyncio.gather(*(self._afetch(cache, request, payload, key, budget)
                                             for payload, key in missing), return_exceptions=True)
            paid = sum(r[1] for r in results if not isinstance(r, BaseException))
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                wasted += paid  # what the parts that did answer cost: they are cached, and counted
                if not all(isinstance(f, ProviderError) for f in failures):
                    raise next(f for f in failures if not isinstance(f, ProviderError))
                errors.append(failures[0])
                continue
            fresh = iter(results)
            responses, shared = [], 0
            for hit in cached:
                if hit is None:
                    hit, _, was_shared = next(fresh)
                    shared += was_shared
                responses.append(hit)
            hits = len(cached) - len(missing) + shared
            return Outcome(fanout.merge_responses(responses), paid + wasted, hits, request)
        raise _all_failed(errors, wasted)

    async def _afetch(self, cache, request: PreparedRequest, payload: dict, key: bytes,
                      budget: BudgetGuard | None) -> tuple[dict, float, bool]:
        """(response, dollars paid, shared with an identical request in flight in this or another process)."""
        on_unanswered = self._unanswered_hook(budget, request, payload)
        if cache is None:
            response = await self.providers.acomplete(request, payload, on_unanswered)
            return response, self.cost(request.model, response), False
        slot = (id(cache), key)
        pending = self._in_flight.get(slot)
        if pending is not None:
            return await asyncio.shield(pending), 0.0, True
        future = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = future
        try:
            shared = await _claim_or_wait(cache, key)
            if shared is not None:
                future.set_result(shared)
                return shared, 0.0, True
            try:
                response = await self.providers.acomplete(request, payload, on_unanswered)
                refused = cache.put(key, response)  # durable before anyone uses it
            finally:
                cache.inflight.release(key)
            future.set_result(response)
            cost = self.cost(request.model, response)
            if refused:
                self.caches.unkept.add(cost, refused)
            return response, cost, False
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody is warned about it
            raise
        finally:
            del self._in_flight[slot]

    def _unanswered_hook(self, budget: BudgetGuard | None, request: PreparedRequest, payload: dict):
        """Called when an attempt may have been billed without an answer; False stops the retries."""
        if budget is None:
            return None
        worst = worst_case_cost(self.catalog.get(request.model), payload)
        return lambda: budget.unanswered_attempt(worst)


async def _claim_or_wait(cache, key: bytes) -> dict | None:
    """Claim `key` for this process (None: go and pay), or wait for the process that is paying for it and
    return its answer from the cache. A claim whose owner dies or overstays its lease is taken over."""
    delay = 0.02
    while True:
        holder = cache.inflight.claim(key)
        hit = cache.get(key)  # answered between our miss and our claim, or while we waited
        if hit is not None:
            if holder is None:
                cache.inflight.release(key)
            return hit
        if holder is None:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)

def _all_failed(errors: list[ProviderError], spent: float = 0.0) -> EngineError:
    if len(errors) == 1:
        error = errors[0]
    else:
        lines = "\n".join(f"  - {e}" for e in errors)
        last = errors[-1]
        error = type(last)(f"all {len(errors)} endpoints failed:\n{lines}", "config_list", status=last.status,
                           retryable=all(e.retryable for e in errors))
        error.possibly_billed = any(e.possibly_billed for e in errors)
    error.spent = spent  # dollars paid on the way (partial fan-outs), for the budget
    return error
