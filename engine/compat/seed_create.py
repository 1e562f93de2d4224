"""`Completion.create` as the seed library's 0.1.x users call it: the control arguments (`filter_func`,
`raise_on_ratelimit_or_timeout`, `allow_format_str_template`) steer the call and are never sent; the response
carries `cost` and, with a `config_list`, `config_id` and `pass_filter`; calls are book-kept when logging is on.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from ..core.errors import ProviderError
from ..requests.requester import Outcome, prepare
from .responses import Response
from ..session import Session

logger = logging.getLogger("engine")

RATE_LIMITED_OR_TIMED_OUT = -1  # what 0.1.x's create returns instead of raising, when asked to


def create(session: Session, config: Mapping[str, Any], context: Mapping | None, use_cache: bool, force_chat: bool,
           filter_func: Callable[..., bool] | None = None, raise_on_ratelimit_or_timeout: bool = True) -> Response | int:
    """One response through the cache, trying the `config_list` entries in order.

    Without `filter_func` the first entry that answers wins (entries before the last get no retry period, so
    a 429 or a timeout moves on at once). With it, each answer is offered to `filter_func(context=...,
    base_config=..., response=...)`; False moves on to the next entry, and the last entry's answer comes back
    with `pass_filter` False. `cost` adds up every answer the call used.
    """
    config_list = config.get("config_list")
    if config_list is None and filter_func is None:  # the plain call, and the cache-hit path: kept short
        requests = prepare(config, context, session.catalog, session.seed, force_chat)
        try:
            return _response(session, session.requester.run(requests, use_cache))
        except ProviderError as exc:
            return _gave_up(exc, raise_on_ratelimit_or_timeout)
    if isinstance(config_list, list) and not config_list:
        logger.warning("create() got an empty config_list: using the config itself")
        config = {k: v for k, v in config.items() if k != "config_list"}
    with_list = bool(config.get("config_list"))
    requests = prepare(config, context, session.catalog, session.seed, force_chat)
    groups = [requests] if filter_func is None else [[r] for r in requests]
    base_config = {k: v for k, v in config.items() if k != "config_list"}
    cost = 0.0
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        try:
            outcome = session.requester.run(group, use_cache)
        except ProviderError as exc:
            if not last:
                logger.debug("config %d failed, trying the next one: %s", group[0].entry_index, exc)
                continue
            return _gave_up(exc, raise_on_ratelimit_or_timeout)
        response = _response(session, outcome)
        cost += response["cost"]
        if not with_list:
            return response
        pass_filter = None if filter_func is None else bool(
            filter_func(context=context, base_config=base_config, response=response))
        if pass_filter is not False or last:
            response["cost"], response["config_id"], response["pass_filter"] = cost, outcome.request.entry_index, \
                pass_filter
            return response
    raise AssertionError("unreachable: the last group returns or raises")


def _gave_up(exc: ProviderError, raise_on_ratelimit_or_timeout: bool) -> int:
    """0.1.x's -1 for a rate limit or timeout (or a 5xx) that outlasted the retries, when asked; else raise."""
    if raise_on_ratelimit_or_timeout or not exc.retryable:
        raise exc
    logger.warning("no response (rate limit, timeout or server error, after retrying): returning -1")
    return RATE_LIMITED_OR_TIMED_OUT


def _response(session: Session, outcome: Outcome) -> Response:
    """The answer with its list-price cost (also on a cache hit, as 0.1.x), logged when logging is on."""
    response = Response(outcome.response)
    usage = response.get("usage")
    response["cost"] = session.catalog.cost(outcome.request.model, usage) if usage else 0.0
    log = session.usage_log
    if log is not None:
        log.record(outcome.request.payload, response, response["cost"])
    return response
