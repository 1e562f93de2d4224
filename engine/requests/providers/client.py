"""Send one prepared request to its endpoint through the async `openai` client, with retries.

There is one path: the sync API runs it on the session's loop thread. The `n` fan-out for providers that
ignore `n` lives in `engine.requests.requester`, so each choice is cached on its own.
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import replace
from typing import Callable

import openai
from tenacity import AsyncRetrying

from ...core.loop import LoopThread
from ...core.config import RequestsConfig
from ...core.errors import BudgetExhausted, ProviderError
from .answers import parse_answer
from .embedded import EmbeddedServer
from .endpoint import Endpoint
from .retry import RetryPolicy, is_retryable, possibly_billed, provider_error, retry_after_seconds

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

    def _client_for(self, request):
        client = self._client(request.endpoint)
        return client if request.timeout is None else client.with_options(timeout=float(request.timeout))

    async def acomplete(self, request, payload: dict, on_unanswered: Callable[[], bool] | None = None) -> dict:
        """Send `payload` (one part of a PreparedRequest); returns a JSON-ready dict.

        The first attempt goes straight to the SDK (most calls succeed, and this path is hot); a
        retryable failure hands over to tenacity, after the wait the policy gives for that failure.
        `on_unanswered()` is called after an attempt that may have been billed without an answer (a
        timeout, a connection dropped after sending); when it returns False there is no budget for another
        attempt and BudgetExhausted is raised.
        """
        endpoint = request.endpoint
        try:
            return await self._attempt(request, payload, on_unanswered)
        except openai.OpenAIError as exc:
            await asyncio.sleep(self._first_wait(request, exc))
        try:
            async for attempt in AsyncRetrying(**self._policy(request).tenacity_kwargs):
                with attempt:
                    return await self._attempt(request, payload, on_unanswered)
        except openai.OpenAIError as exc:
            raise provider_error(exc, endpoint.describe(), endpoint.api_key) from None

    async def _attempt(self, request, payload: dict, on_unanswered: Callable[[], bool] | None) -> dict:
        """One try; a failure is reported at once (a dead embedded server is noticed per attempt, a
        possibly billed one is counted before the next is made)."""
        endpoint = request.endpoint
        server = self.embedded(endpoint) if endpoint.provider == "embedded" else None
        if server is not None and server.ready_url() is None:
            await asyncio.to_thread(server.base_url)  # starting or joining it blocks: not on the loop
        try:
            answer = await self._send(self._client_for(request), endpoint, payload)
        except ProviderError as exc:  # a 200 whose body cannot be used: billed, perhaps, so counted for good
            if on_unanswered is not None and getattr(exc, "possibly_billed", False):
                on_unanswered()
            raise
        except openai.OpenAIError as exc:
            self._on_failure(endpoint, exc)
            if on_unanswered is not None and possibly_billed(exc) and not on_unanswered():
                raise BudgetExhausted(f"{endpoint.describe()}: an attempt timed out or lost its connection after "
                                      "sending (it may have been billed), and the budget has no room to try "
                                      "again") from None
            raise
        if server is not None:
            server.mark_answered()
        return answer

    def _first_wait(self, request, exc: openai.OpenAIError) -> float:
        """How long to wait before the second attempt; raises when retrying cannot help or cannot fit
        (a Retry-After longer than the whole retry period gives up now instead of hanging)."""
        endpoint, policy = request.endpoint, self._policy(request)
        hinted = retry_after_seconds(exc)
        wait = max(policy.initial_wait, hinted or 0.0)
        if not is_retryable(exc) or wait >= policy.max_total_seconds:
            raise provider_error(exc, endpoint.describe(), endpoint.api_key) from None
        return wait

    @staticmethod
    async def _send(client, endpoint: Endpoint, payload: dict) -> dict:
        """POST the engine's own JSON body and read the raw answer: the SDK's typed request and response
        models would cost more CPU than the rest of the request path (`make bench`). The SDK still builds
        the URL (Azure deployments included), the headers and the errors."""
        raw = await client.post("/chat/completions" if endpoint.chat else "/completions", body=payload,
                                cast_to=bytes)
        return parse_answer(raw, endpoint.describe())

    def _on_failure(self, endpoint: Endpoint, exc: BaseException) -> None:
        if endpoint.provider == "embedded" and isinstance(exc, openai.APIConnectionError):
            request = getattr(exc, "request", None)
            port = request.url.port if request is not None else None
            self.embedded(endpoint).report_failure(port)  # a dead server restarts; a crash loop, an error
