"""engine: find the cheapest LLM inference settings that still do a task well."""
from .compat.completion import ChatCompletion, Completion
from .compat.endpoint_lists import (config_list_from_dotenv, config_list_from_json, config_list_from_models,
                                    config_list_gpt4_gpt35, config_list_openai_aoai, filter_config, get_config,
                                    get_config_list)
from .core.errors import (AuthenticationError, BudgetError, CacheError, ConfigError, EngineError, ProviderError,
                          SearchFailedError, TemplateKeyError, UnknownModelError)
from .core.digests import get_key
from .mlflow.registry import load_config
from .session import Session, current_session

__all__ = ["AuthenticationError", "BudgetError", "CacheError", "ChatCompletion", "Completion", "ConfigError",
           "EngineError", "ProviderError", "SearchFailedError", "Session", "TemplateKeyError", "UnknownModelError", "current_session",
           "get_key", "load_config",
           # pyautogen 0.1.x's endpoint-list helpers
           "config_list_from_dotenv", "config_list_from_json", "config_list_from_models", "config_list_gpt4_gpt35",
           "config_list_openai_aoai", "filter_config", "get_config", "get_config_list"]
