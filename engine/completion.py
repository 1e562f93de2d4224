"""The documented seed API (`Completion`, `ChatCompletion`): a thin facade over the engine's modules.

Every classmethod acts on the current session (`engine.session.current_session`): the innermost
`with Session(...)` of the caller's context, else the process's default.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Callable, Dict, List, Optional

from .errors import ConfigError
from .evaluation import extract_text
from .keys import get_key
from .promotion import load_config
from .session import DEFAULT_CACHE_PATH, DEFAULT_SEED, current_session
from .testing import evaluate_config
from .tuning import Tuner, TuneSpec

logger = logging.getLogger("engine")
# The seed API's test() falls back to the eval_func of the last tune() in the same context.
_last_eval_func: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("engine_eval_func", default=None)


@contextlib.contextmanager
def _logging_level(level):
    """The seed API's `logging_level`: applies to the engine's logger for the call."""
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def _registered(config: dict) -> dict:
    """Merge a config loaded from the MLflow registry with the keys given beside it (they win)."""
    rest = dict(config)
    return {**load_config(rest.pop("config")), **rest}


# Class attributes the seed library read as settings: each one works here, on the current session ...
_REQUEST_ATTRIBUTES = {"request_timeout": "timeout", "max_retry_period": "max_retry_period",
                       "retry_timeout": "max_retry_period", "retry_wait_time": "retry_wait_time"}
# ... or says what replaced it.
_REPLACED_ATTRIBUTES = {
    "price1K": "prices live in the model catalog: a conf/model/NAME.yaml file, or "
               "current_session().catalog.add({'name': ..., 'price_per_1k': {'prompt': ..., 'completion': ...}})",
    "cache_path": "use Completion.set_cache(seed, cache_path)",
    "seed": "use Completion.set_cache(seed, cache_path)",
    "default_search_space": "pass the search space to tune(**config), or set search.* in conf/search/",
    "chat_models": "mark a model `chat: true` in its conf/model/NAME.yaml",
}


class _SeedSettings(type):
    """Old code configures the seed library by assigning class attributes; none is silently ignored."""

    def __setattr__(cls, name, value):
        if name in _REQUEST_ATTRIBUTES:
            current_session().set_requests(**{_REQUEST_ATTRIBUTES[name]: value})
        elif name in _REPLACED_ATTRIBUTES:
            raise ConfigError(f"Completion.{name} is not a setting of this engine: {_REPLACED_ATTRIBUTES[name]}")
        else:
            super().__setattr__(name, value)

    def __getattr__(cls, name):
        if name in _REQUEST_ATTRIBUTES:
            return getattr(current_session().requests, _REQUEST_ATTRIBUTES[name])
        if name in _REPLACED_ATTRIBUTES:
            raise ConfigError(f"Completion.{name} is not a setting of this engine: {_REPLACED_ATTRIBUTES[name]}")
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class Completion(metaclass=_SeedSettings):
    """A class for OpenAI completion API; also ChatCompletion, Azure OpenAI and compatible endpoints."""

    _force_chat = False

    @staticmethod
    def get_key(config):
        return get_key(config)

    @classmethod
    def set_cache(cls, seed: int = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH) -> None:
        """Responses are cached under `{cache_path}/{seed}`; different seeds, different caches."""
        current_session().set_cache(seed, cache_path)

    @classmethod
    def create(cls, context: Optional[Dict] = None, use_cache: Optional[bool] = True, **config) -> dict:
        """Make a completion for a context: templates in `prompt`/`messages` are filled from `context`."""
        if "config" in config:  # a registered config, e.g. config="models:/NAME@production"
            config = _registered(config)
        return current_session().create(config, context, use_cache, cls._force_chat).response

    @classmethod
    def cost(cls, model: str, response: dict) -> float:
        """Dollars for a response, from its reported usage and the price table in conf/model/."""
        return current_session().catalog.cost(model, response.get("usage"))

    @classmethod
    def extract_text(cls, response: dict) -> List[str]:
        """The texts of all choices, for chat and text completion alike."""
        return extract_text(response)

    @classmethod
    def test(cls, data, config, eval_func=None, use_cache=True, agg_method="avg",
             return_responses_and_per_instance_result=False, logging_level=logging.WARNING, concurrency=8):
        """Evaluate `config` over `data` with `eval_func(responses, **point)`; aggregate with `agg_method`.

        Returns None when neither this call nor an earlier `tune` gave an eval_func. Requests for
        different points run concurrently (`concurrency`); results equal a sequential run's.
        """
        session = current_session()
        if isinstance(config, str):
            config = load_config(config)
        eval_func = eval_func or _last_eval_func.get()
        if eval_func is None:
            logger.warning("test() needs an eval_func, or a tune() before it that had one")
            return None
        with _logging_level(logging_level):
            return evaluate_config(session.requester.for_run(), session.seed, data, config, eval_func, use_cache,
                                   agg_method, return_responses_and_per_instance_result, concurrency,
                                   cls._force_chat, progress=logging_level <= logging.WARNING)

    @classmethod
    def tune(cls, data, metric, mode, eval_func, log_file_name=None, inference_budget=None,
             optimization_budget=None, num_samples=1, logging_level=logging.WARNING, concurrency=8, trials=None,
             **config):
        """Search inference settings for `data` under the budgets; returns (best_config, analysis)."""
        session = current_session()
        with _logging_level(logging_level):
            spec = TuneSpec(data, metric, mode, eval_func, inference_budget=inference_budget,
                            optimization_budget=optimization_budget, num_samples=num_samples,
                            log_file_name=log_file_name, concurrency=concurrency, trials=trials,
                            force_chat=cls._force_chat,
                            progress=logging_level <= logging.WARNING, space=config)
            tuner = Tuner(spec, session.requester.for_run(), session.seed)
            _last_eval_func.set(eval_func)
            return tuner.run()


class ChatCompletion(Completion):
    """A class for OpenAI API ChatCompletion: always the chat endpoint."""

    _force_chat = True
