"""engine: find the cheapest LLM inference settings that still do a task well."""
from .completion import ChatCompletion, Completion
from .errors import (AuthenticationError, BudgetError, CacheError, ConfigError, EngineError, ProviderError,
                     TemplateKeyError, UnknownModelError)
from .keys import get_key
from .promotion import load_config
from .session import Session, current_session

__all__ = ["AuthenticationError", "BudgetError", "CacheError", "ChatCompletion", "Completion", "ConfigError",
           "EngineError", "ProviderError", "Session", "TemplateKeyError", "UnknownModelError", "current_session",
           "get_key", "load_config"]
