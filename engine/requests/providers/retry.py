"""What to retry and how long to wait: exponential backoff with jitter that honours Retry-After.

429, 5xx, timeouts and dropped connections are retried up to a total time; 400/401/403/404 are not,
and surface at once with the provider's own message (with any credential scrubbed from it). The loop that
makes the attempts is `ProviderClient.acomplete`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import openai

from ...core.config import RequestsConfig
from ...core.errors import AuthenticationError, ProviderError

_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|[A-Fa-f0-9]{32,})")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)):
        return True  # APITimeoutError is an APIConnectionError
    return isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 409))


def possibly_billed(exc: BaseException) -> bool:
    """The request was sent and no answer came back: the server may have finished and billed it (a read
    timeout, a connection dropped mid-answer). A refused connection or an HTTP error was not billed."""
    if not isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one too
        return False
    # by name: the SDK's transport is httpx or httpx2 depending on its version, and both name them so
    return type(exc.__cause__).__name__ not in ("ConnectError", "ConnectTimeout")


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After (or retry-after-ms) in seconds, if it sent one (read here only)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one request, in total, and how to space the attempts."""

    max_total_seconds: float = RequestsConfig.max_retry_period
    initial_wait: float = RequestsConfig.retry_wait_time
    max_wait: float = RequestsConfig.max_wait
    jitter: float = RequestsConfig.jitter

    @classmethod
    def from_config(cls, cfg: RequestsConfig) -> "RetryPolicy":
        return cls(max_total_seconds=float(cfg.max_retry_period), initial_wait=float(cfg.retry_wait_time),
                   max_wait=float(cfg.max_wait), jitter=float(cfg.jitter))

    def wait(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait after failed attempt number `attempt` (1: the first): initial_wait doubled per
        attempt plus up to `jitter`, at most max_wait (tenacity's wait_exponential_jitter), or the server's
        Retry-After when it asks for longer (never cut to max_wait: if it does not fit, the request gives up)."""
        try:
            backoff = min(self.initial_wait * 2.0 ** (attempt - 1) + random.uniform(0.0, self.jitter), self.max_wait)
        except OverflowError:
            backoff = self.max_wait
        hinted = retry_after_seconds(exc)
        return hinted if hinted is not None and hinted > backoff else backoff


def scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return _KEYLIKE.sub("***", text)


def provider_error(exc: BaseException, endpoint_desc: str, secret: str | None) -> ProviderError:
    """Translate an openai exception into the engine's own, never carrying the key."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) and body.get("message") else str(exc)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message") or message
    message = scrub(str(message), secret)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return AuthenticationError(f"the endpoint refused the credentials (HTTP {status}): {message}",
                                   endpoint_desc, status=status)
    label = f"HTTP {status}" if status else type(exc).__name__
    return ProviderError(f"{label}: {message}", endpoint_desc, status=status, retryable=is_retryable(exc))
