"""Send one prepared request to its endpoint through the `openai` client, sync or async.

Both paths share the payload shaping, the retry policy and the error translation; only the awaiting
differs. The `n` fan-out for providers that ignore `n` lives in `engine.requests`, so each choice is
cached on its own.
"""
from __future__ import annotations

import asyncio
import threading
import time
import weakref
from dataclasses import replace

import openai
from tenacity import AsyncRetrying, Retrying

from ..aio import LoopThread
from .embedded import EmbeddedServer
from .endpoint import Endpoint
from .retry import RetryPolicy, is_retryable, provider_error, retry_after_seconds

# Parameters the openai SDK takes by name; anything else in a request goes in `extra_body`.
_SDK_PARAMS = frozenset({
    "model", "messages", "prompt", "temperature", "top_p", "max_tokens", "n", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "user", "best_of", "echo", "suffix",
    "response_format", "tools", "tool_choice", "max_completion_tokens",
})


def _sdk_kwargs(payload: dict) -> dict:
    kwargs = {k: v for k, v in payload.items() if k in _SDK_PARAMS}
    extra = {k: v for k, v in payload.items() if k not in _SDK_PARAMS}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


class ProviderClient:
    """openai clients per endpoint (one sync, one async each) and retries."""

    def __init__(self, policy: RetryPolicy | None = None, timeout: float = 60.0,
                 embedded: EmbeddedServer | None = None):
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self._clients: dict = {}
        self._async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> its clients
        self._lock = threading.Lock()
        self.embedded = embedded or EmbeddedServer()
        self.loop = LoopThread()  # where the async clients live

    def _client(self, endpoint: Endpoint, is_async: bool):
        if endpoint.provider == "embedded":  # async callers start it off the loop first (see acomplete)
            base_url = self.embedded.ready_url() or self.embedded.base_url()
        else:
            base_url = endpoint.base_url
        key = (endpoint.provider, base_url, endpoint.api_version, endpoint.api_key, endpoint.organization)
        if is_async:  # an async client belongs to the event loop it was made in
            clients = self._async_clients.setdefault(asyncio.get_running_loop(), {})
        else:
            clients = self._clients
        client = clients.get(key)
        if client is None:
            with self._lock:
                client = clients.get(key) or self._make(endpoint, base_url, is_async)
                clients[key] = client
        return client

    def _make(self, endpoint: Endpoint, base_url: str | None, is_async: bool):
        common = dict(api_key=endpoint.api_key or "no-key", max_retries=0, timeout=self.timeout)
        if endpoint.provider == "azure":
            cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
            return cls(azure_endpoint=base_url, api_version=endpoint.api_version, **common)
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(base_url=base_url, organization=endpoint.organization, **common)

    def _policy(self, request) -> dict:
        if request.retry_period is None:
            return self.policy.tenacity_kwargs
        return replace(self.policy, max_total_seconds=float(request.retry_period)).tenacity_kwargs

    def _client_for(self, request, is_async: bool):
        client = self._client(request.endpoint, is_async)
        return client if request.timeout is None else client.with_options(timeout=float(request.timeout))

    def complete(self, request, payload: dict) -> dict:
        """Send `payload` (one part of a PreparedRequest) and wait; returns a JSON-ready dict.

        The first attempt goes straight to the SDK (most calls succeed, and this path is hot); a
        retryable failure hands over to tenacity, after the wait the policy gives for that failure.
        """
        endpoint = request.endpoint
        try:
            return self._attempt(request, payload)
        except openai.OpenAIError as exc:
            time.sleep(self._first_wait(request, exc))
        try:
            for attempt in Retrying(**self._policy(request)):
                with attempt:
                    return self._attempt(request, payload)
        except openai.OpenAIError as exc:
            raise provider_error(exc, endpoint.describe(), endpoint.api_key) from None

    async def acomplete(self, request, payload: dict) -> dict:
        """The same as `complete`, awaiting the async client."""
        endpoint = request.endpoint
        try:
            return await self._aattempt(request, payload)
        except openai.OpenAIError as exc:
            await asyncio.sleep(self._first_wait(request, exc))
        try:
            async for attempt in AsyncRetrying(**self._policy(request)):
                with attempt:
                    return await self._aattempt(request, payload)
        except openai.OpenAIError as exc:
            raise provider_error(exc, endpoint.describe(), endpoint.api_key) from None

    def _attempt(self, request, payload: dict) -> dict:
        """One try; a failure is reported at once (a dead embedded server is noticed per attempt)."""
        try:
            return self._send(self._client_for(request, False), request.endpoint, payload)
        except openai.OpenAIError as exc:
            self._on_failure(request.endpoint, exc)
            raise

    async def _aattempt(self, request, payload: dict) -> dict:
        if request.endpoint.provider == "embedded" and self.embedded.ready_url() is None:
            await asyncio.to_thread(self.embedded.base_url)  # starting or joining it blocks: not on the loop
        try:
            return await self._send(self._client_for(request, True), request.endpoint, payload)
        except openai.OpenAIError as exc:
            self._on_failure(request.endpoint, exc)
            raise

    def _first_wait(self, request, exc: openai.OpenAIError) -> float:
        """How long to wait before the second attempt; raises when retrying cannot help or cannot fit
        (a Retry-After longer than the whole retry period gives up now instead of hanging)."""
        endpoint = request.endpoint
        period = self.policy.max_total_seconds if request.retry_period is None else float(request.retry_period)
        hinted = retry_after_seconds(exc)
        wait = max(self.policy.initial_wait, hinted or 0.0)
        if not is_retryable(exc) or wait >= period:
            raise provider_error(exc, endpoint.describe(), endpoint.api_key) from None
        return wait

    def _send(self, client, endpoint: Endpoint, payload: dict):
        """Issue the SDK call; returns a dict (sync) or an awaitable of one (async)."""
        resource = client.chat.completions if endpoint.chat else client.completions
        result = resource.create(**_sdk_kwargs(payload))
        embedded = endpoint.provider == "embedded"
        if asyncio.iscoroutine(result):
            async def dump():
                answer = (await result).model_dump(mode="json")
                if embedded:
                    self.embedded.mark_answered()
                return answer
            return dump()
        if embedded:
            self.embedded.mark_answered()
        return result.model_dump(mode="json")

    def _on_failure(self, endpoint: Endpoint, exc: BaseException) -> None:
        if endpoint.provider == "embedded" and isinstance(exc, openai.APIConnectionError):
            request = getattr(exc, "request", None)
            port = request.url.port if request is not None else None
            self.embedded.report_failure(port)  # a dead server restarts; a crash loop becomes an error
