"""Send one prepared request to its endpoint through the async `openai` client, with retries.

One loop makes every attempt of a request, the first included, as openai-python's own `_base_client` does
(the SDK's clients are made with max_retries=0): one deadline, `max_total_seconds` after the first attempt
began, bounds the waits and clips the attempts' timeouts, and every attempt carries the same Idempotency-Key.

There is one path: the sync API runs it on the session's loop thread. The `n` fan-out for providers that
ignore `n` lives in `engine.requests.requester`, so each choice is cached on its own.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from dataclasses import replace
from typing import Callable

import openai

from ...core.loop import LoopThread
from ...core.config import RequestsConfig
from ...core.errors import BudgetExhausted, ProviderError
from .answers import parse_answer
from .embedded import EmbeddedServer
from .endpoint import Endpoint
from .limiter import CONGESTED, NEUTRAL, OK, PINNED, REFUSED, Limiters
from .retry import RetryPolicy, is_retryable, possibly_billed, provider_error, retry_after_seconds

CONGESTION_STATUSES = frozenset({429, 502, 503, 504})  # the server says it has too much to do

class ProviderClient:
    """Async openai clients per endpoint, retries, and the embedded server; one request path for all."""

    def __init__(self, policy: RetryPolicy | None = None, timeout: float = RequestsConfig.timeout,
                 embedded: EmbeddedServer | None = None, loop: LoopThread | None = None):
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.loop = loop or LoopThread()  # where the clients live and the requests run
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> its clients
        self._servers: dict[tuple, EmbeddedServer] = {}  # (model, server options) -> its embedded server
        self._stand_in = embedded  # a test's server for every embedded endpoint
        self._lock = threading.Lock()
        self.limiters = Limiters()  # requests in flight per endpoint (limiter.py), shared by every run's view

    def with_settings(self, policy: RetryPolicy, timeout: float) -> "ProviderClient":
        """The same clients, loop and servers with another retry policy and timeout (a run's own)."""
        view = ProviderClient.__new__(ProviderClient)
        view.__dict__.update(self.__dict__)
        view.policy, view.timeout = policy, timeout
        return view

    def embedded(self, endpoint: Endpoint) -> EmbeddedServer:
        """The embedded server of an endpoint's model and server options, made on first use."""
        if self._stand_in is not None:
            return self._stand_in
        key = (endpoint.model, endpoint.server_options)
        server = self._servers.get(key)
        if server is None:
            with self._lock:
                server = self._servers.get(key) or EmbeddedServer(endpoint.model, **dict(endpoint.server_options))
                self._servers[key] = server
        return server

    def _client(self, endpoint: Endpoint):
        """The endpoint's client on the running loop (an async client belongs to the loop that made it)."""
        base_url = self.embedded(endpoint).base_url() if endpoint.provider == "embedded" else endpoint.base_url
        key = (endpoint.provider, base_url, endpoint.api_version, endpoint.api_key, endpoint.organization)
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(key)
        if client is None:
            with self._lock:
                client = clients.get(key) or self._make(endpoint, base_url)
                clients[key] = client
        return client

    def _make(self, endpoint: Endpoint, base_url: str | None):
        common = dict(api_key=endpoint.api_key or "no-key", max_retries=0, timeout=self.timeout)
        if endpoint.provider == "azure":
            return openai.AsyncAzureOpenAI(azure_endpoint=base_url, api_version=endpoint.api_version, **common)
        return openai.AsyncOpenAI(base_url=base_url, organization=endpoint.organization, **common)

    def close(self) -> None:
        """Close the HTTP clients, leave the embedded servers, stop the loop."""
        async def close_clients():
            for client in list(self._clients.get(asyncio.get_running_loop(), {}).values()):
                await client.close()

        self.loop.close(close_clients)
        self._clients = weakref.WeakKeyDictionary()
        for server in [*self._servers.values(), *([self._stand_in] if self._stand_in else [])]:
            server.release()

    def _policy(self, request) -> RetryPolicy:
        """The client's policy with a request's own retry_period / retry_wait, if it gave any."""
        if request.retry_period is None and request.retry_wait is None:
            return self.policy
        changes = {"max_total_seconds": request.retry_period, "initial_wait": request.retry_wait}
        return replace(self.policy, **{k: v for k, v in changes.items() if v is not None})

    def _client_for(self, request, left: float | None = None):
        """The endpoint's client with the request's timeout (its own, else this client's), cut to `left`, the
        seconds left before the request's deadline (None on a first attempt: it has its whole timeout)."""
        client = self._client(request.endpoint)
        timeout = self.timeout if request.timeout is None else float(request.timeout)
        if left is not None and left < timeout:
            timeout = max(left, 0.001)  # the deadline has (all but) passed: an attempt that times out at once
        return client if timeout == client.timeout else client.with_options(timeout=timeout)

    async def acomplete(self, request, payload: dict, on_unanswered: Callable[[], bool] | None = None) -> dict:
        """Send `payload` (one part of a PreparedRequest); returns a JSON-ready dict.

        Every attempt, the first included, is made by this one loop. A failure that `is_retryable` is tried
        again after `policy.wait` (exponential backoff with jitter, or the server's Retry-After when longer),
        unless that wait would end at or past the deadline, `max_total_seconds` after the first attempt began:
        then the request gives up at once with the provider's error (so 0 means one attempt, and a Retry-After
        longer than what is left fails now instead of hanging). An attempt after the first has its timeout cut
        to the time left before the deadline, so a request takes about max(timeout, retry period) at most.
        Every attempt carries the same Idempotency-Key, one per call. Each attempt first waits for a slot of
        its endpoint's limit of requests in flight (limiter.py); the deadline runs from the first one's. A
        successful first attempt costs a key, a clock read, an options dict and a slot (a hand-written loop:
        tenacity's costs ~25 us per request).
        `on_unanswered()` is called after an attempt that may have been billed without an answer (a
        timeout, a connection dropped after sending); when it returns False there is no budget for another
        attempt and BudgetExhausted is raised.
        """
        key = f"engine-{os.urandom(16).hex()}"  # a uuid4's randomness at a fifth of its cost; given as the SDK's
        # own option (it then makes no key of its own) and as the header, which OpenAI's client does not set
        options = {"idempotency_key": key, "headers": {"Idempotency-Key": key}}
        attempt, left, policy, limit = 1, None, None, self.limit(request.endpoint)
        while True:
            ticket = await limit.acquire()  # a slot of the endpoint's limit: the deadline runs from the first
            if attempt == 1:
                start = time.monotonic()
            else:
                left = start + policy.max_total_seconds - time.monotonic()
            try:
                return await self._attempt(request, payload, options, left, on_unanswered, limit, ticket)
            except openai.OpenAIError as exc:
                failure = exc
            policy = policy or self._policy(request)
            wait = policy.wait(attempt, failure) if is_retryable(failure) else None
            if wait is None or time.monotonic() - start + wait >= policy.max_total_seconds:
                endpoint = request.endpoint
                raise provider_error(failure, endpoint.describe(), endpoint.api_key) from None
            await asyncio.sleep(wait)
            attempt += 1

    async def _attempt(self, request, payload: dict, options: dict, left: float | None,
                       on_unanswered: Callable[[], bool] | None, limit, ticket: tuple) -> dict:
        """One try, with `left` seconds before the request's deadline (None: the first); a failure is
        reported at once (a dead embedded server is noticed per attempt, a possibly billed one is counted
        before the next is made). The slot `ticket` of the endpoint's `limit` is given back with what the
        attempt's end says of the endpoint's load."""
        endpoint = request.endpoint
        signal, sent, wait = NEUTRAL, time.monotonic(), None
        try:
            server = self.embedded(endpoint) if endpoint.provider == "embedded" else None
            if server is not None and server.ready_url() is None:
                await asyncio.to_thread(server.base_url)  # starting or joining it blocks: not on the loop
                sent = time.monotonic()
            answer = await self._send(self._client_for(request, left), endpoint, payload, options)
            signal = OK
        except ProviderError as exc:  # a 200 whose body cannot be used: billed, perhaps, so counted for good
            if on_unanswered is not None and getattr(exc, "possibly_billed", False):
                on_unanswered()
            raise
        except openai.OpenAIError as exc:
            signal = congestion(exc)
            wait = retry_after_seconds(exc)
            self._on_failure(endpoint, exc)
            if on_unanswered is not None and possibly_billed(exc) and not on_unanswered():
                raise BudgetExhausted(f"{endpoint.describe()}: an attempt timed out or lost its connection after "
                                      "sending (it may have been billed), and the budget has no room to try "
                                      "again") from None
            raise
        finally:
            limit.release(ticket, signal, time.monotonic() - sent, size_class(payload), wait)
        if server is not None:
            server.mark_answered()
        return answer

    def limit(self, endpoint: Endpoint):
        """The endpoint's limit of requests in flight: adaptive between its model's floor and ceiling, or
        fixed at the number an explicit `concurrency` pins for the requests of this context."""
        where = None if endpoint.provider == "embedded" else endpoint.base_url
        return self.limiters.get((endpoint.provider, where, endpoint.api_version, endpoint.api_model),
                                 endpoint.limits, PINNED.get())

    @staticmethod
    async def _send(client, endpoint: Endpoint, payload: dict, options: dict) -> dict:
        """POST the engine's own JSON body and read the raw answer: the SDK's typed request and response
        models would cost more CPU than the rest of the request path (`make bench`). The SDK still builds
        the URL (Azure deployments included), the headers and the errors; `options` are its per-request
        options (the request's idempotency key)."""
        raw = await client.post("/chat/completions" if endpoint.chat else "/completions", body=payload,
                                cast_to=bytes, options=options)
        return parse_answer(raw, endpoint.describe())

    def _on_failure(self, endpoint: Endpoint, exc: BaseException) -> None:
        if endpoint.provider == "embedded" and isinstance(exc, openai.APIConnectionError):
            request = getattr(exc, "request", None)
            port = request.url.port if request is not None else None
            self.embedded(endpoint).report_failure(port)  # a dead server restarts; a crash loop, an error


def congestion(exc: BaseException) -> str:
    """What a failed attempt says of the endpoint's load: REFUSED (429, 502/503/504, a Retry-After), CONGESTED
    (it timed out), or NEUTRAL."""
    if isinstance(exc, openai.APITimeoutError):
        return CONGESTED
    status = getattr(exc, "status_code", None)
    if status in CONGESTION_STATUSES or (status is not None and retry_after_seconds(exc) is not None):
        return REFUSED
    return NEUTRAL


def size_class(payload: dict) -> tuple:
    """Requests whose answers should take about as long: the same max_tokens within a factor 2, the same n."""
    return (int(payload.get("max_tokens") or 0).bit_length(), payload.get("n") or 1)
