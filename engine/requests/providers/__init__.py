"""Providers: every model is reached through the `openai` client (OpenAI, Azure, compatible, embedded)."""
from .client import ProviderClient
from .endpoint import ENDPOINT_KEYS, Endpoint, resolve_endpoint
from .retry import RetryPolicy

__all__ = ["ENDPOINT_KEYS", "Endpoint", "ProviderClient", "RetryPolicy", "resolve_endpoint"]
