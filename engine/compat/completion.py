"""The documented seed API (`Completion`, `ChatCompletion`): a thin facade over the engine's modules.

Every classmethod acts on the current session (`engine.session.current_session`): the innermost
`with Session(...)` of the caller's context, else the process's default.
"""
from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Union

from . import seed_create
from ..requests.cache import CacheRoot
from ..core.errors import ConfigError, UnknownModelError
from ..core.models import inferred_spec
from ..evaluate.evaluator import extract_text
from ..core.digests import get_key
from ..mlflow.registry import load_config
from .responses import Response
from ..session import DEFAULT_CACHE_PATH, DEFAULT_SEED, current_session
from ..core.templates import render, render_messages
from ..evaluate.testing import evaluate_config
from ..tuning import Tuner, TuneSpec
from ..tuning.flaml_adapter import tune as _domains
from ..tuning.space import SearchSpace
from .legacy_names import translate
from .usage_log import UsageLog

logger = logging.getLogger("engine")


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
    "cache_path": "use Completion.set_cache(seed, cache_path_root)",
    "seed": "use Completion.set_cache(seed, cache_path_root)",
    "default_search_space": "pass the search space to tune(**config), or set search.* in conf/search/",
    "chat_models": "mark a model `chat: true` in its conf/model/NAME.yaml",
}


# 0.1.x's default search space searched these models when neither `model` nor a config_list entry named one
OLD_DEFAULT_MODELS = ["text-ada-001", "text-babbage-001", "text-davinci-003", "gpt-3.5-turbo", "gpt-4"]
OLD_DEFAULT_CHAT_MODELS = ["gpt-3.5-turbo", "gpt-4"]


@dataclass
class _LastTune:
    """What 0.1.x's `_eval` reads from the class after a tune (here per session): the data, the space its
    configs are sampled from, the aggregation."""

    data: Any = None
    space: Optional[SearchSpace] = None
    agg_method: Any = "avg"


_last_tunes: "weakref.WeakKeyDictionary[Any, _LastTune]" = weakref.WeakKeyDictionary()


def _last_tune() -> _LastTune:
    return _last_tunes.setdefault(current_session(), _LastTune())


class _SeedSettings(type):
    """Old code configures the seed library by assigning class attributes; none is silently ignored."""

    def __setattr__(cls, name, value):
        if name == "data":  # 0.1.x: the points `_eval` evaluates on (tune sets them), per session here
            _last_tune().data = value
        elif name in _REQUEST_ATTRIBUTES:
            current_session().set_requests(**{_REQUEST_ATTRIBUTES[name]: value})
        elif name in _REPLACED_ATTRIBUTES:
            raise ConfigError(f"Completion.{name} is not a setting of this engine: {_REPLACED_ATTRIBUTES[name]}")
        else:
            super().__setattr__(name, value)

    def __getattr__(cls, name):
        if name == "data":
            return _last_tune().data
        if name in _REQUEST_ATTRIBUTES:
            return getattr(current_session().requests, _REQUEST_ATTRIBUTES[name])
        if name == "seed":  # reading them is harmless: the current session's values
            return current_session().seed
        if name == "cache_path":  # as 0.1.x: the folder of the current seed
            session = current_session()
            return str(session.requester.caches.root / str(session.seed))
        if name in _REPLACED_ATTRIBUTES:
            raise ConfigError(f"Completion.{name} is not a setting of this engine: {_REPLACED_ATTRIBUTES[name]}")
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")

    @property
    def logged_history(cls) -> Optional[Dict]:
        """The book-keeping dict since `start_logging()` (None when logging is off), as 0.1.x's attribute."""
        log = current_session().usage_log
        return None if log is None else log.history


class Completion(metaclass=_SeedSettings):
    """A class for OpenAI completion API; also ChatCompletion, Azure OpenAI and compatible endpoints."""

    _force_chat = False

    @staticmethod
    def get_key(config):
        return get_key(config)

    @classmethod
    def set_cache(cls, seed: int = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH,
                  cache_path_root: Optional[str] = None) -> None:
        """Responses are cached under `{cache_path}/{seed}`; different seeds, different caches.
        `cache_path_root` is the 0.1.x name of `cache_path` (the root); either may be given."""
        current_session().set_cache(seed, cache_path_root if cache_path_root is not None else cache_path)

    @classmethod
    def clear_cache(cls, seed: Optional[int] = None, cache_path_root: Optional[str] = None,
                    cache_path: Optional[str] = None) -> None:
        """Empty the cache of `seed` under the root (default: the current one); every seed's when seed is None."""
        session = current_session()
        given = cache_path_root if cache_path_root is not None else cache_path
        caches = session.requester.caches if given is None else CacheRoot(given)
        if seed is not None:
            seeds = [seed]
        elif caches.root.is_dir():
            seeds = [d.name for d in caches.root.iterdir() if (d / "data.mdb").is_file()]
        else:
            seeds = []
        for one in seeds:
            if (caches.root / str(one) / "data.mdb").is_file():
                caches.for_seed(one).clear()

    @classmethod
    def create(cls, context: Optional[Dict] = None, use_cache: Optional[bool] = True,
               config_list: Optional[List[Dict]] = None, filter_func: Optional[Callable[..., bool]] = None,
               raise_on_ratelimit_or_timeout: Optional[bool] = True,
               allow_format_str_template: Optional[bool] = None, **config) -> Union[Response, int]:
        """Make a completion for a context: templates in `prompt`/`messages` are filled from `context`.

        As in pyautogen 0.1.x: `config_list` entries are tried in order (before the last, a 429 or timeout
        moves on at once); `filter_func(context=, base_config=, response=)` returning False moves on too;
        the response is a dict with attribute access carrying `cost` and, with a config_list, `config_id`
        and `pass_filter`. `raise_on_ratelimit_or_timeout=False` returns -1 when retries ran out.
        String templates are always filled from `context` (the seed's documented behaviour);
        `allow_format_str_template` is accepted for 0.1.x code and changes nothing.
        """
        if "config" in config:  # a registered config, e.g. config="models:/NAME@production"
            config = _registered(config)
        if config_list is not None:
            config["config_list"] = config_list
        config = translate(config)
        return seed_create.create(current_session(), config, context, use_cache, cls._force_chat, filter_func,
                                  raise_on_ratelimit_or_timeout)

    @classmethod
    def cost(cls, model_or_response: Union[str, Dict], response: Optional[Dict] = None) -> float:
        """Dollars for a response, from its reported usage and the price table (conf/model/, then genai-prices).

        `cost(model, response)` (the seed's spelling) or `cost(response)` (0.1.x: the response's own `cost`
        when create() set it, else priced by its `model` field, 0 with a warning when that model is unknown).
        """
        catalog = current_session().catalog
        if response is not None:
            return catalog.cost(model_or_response, response.get("usage"))
        response = model_or_response
        if "cost" in response:
            return response["cost"]
        try:
            return catalog.cost(response.get("model"), response.get("usage"))
        except KeyError:  # UnknownModelError
            logger.warning("cost(response): model %r is not in the price table: 0 returned", response.get("model"))
            return 0.0

    @classmethod
    def extract_text(cls, response: dict) -> List[str]:
        """The texts of all choices, for chat and text completion alike."""
        return extract_text(response)

    @classmethod
    def extract_text_or_function_call(cls, response: dict) -> List:
        """The texts of all choices; a chat choice that calls a function or tool gives its whole message."""
        choices = response["choices"]
        if "text" in choices[0]:
            return [choice["text"] for choice in choices]
        return [c["message"] if ("function_call" in c["message"] or c["message"].get("tool_calls"))
                else c["message"].get("content", "") for c in choices]

    @classmethod
    def instantiate(cls, template, context: Optional[Dict] = None, allow_format_str_template: Optional[bool] = None):
        """A template filled from `context` as create() fills it (a str is formatted, a callable called)."""
        if not context or template is None:
            return template
        return render(template, context)

    @classmethod
    def start_logging(cls, history_dict: Optional[Dict] = None, compact: Optional[bool] = True,
                      reset_counter: Optional[bool] = True) -> None:
        """Book-keep every create() of the current session into `history_dict` (a new dict by default).
        Compact: one entry per conversation with its costs and token counts; else one per call, the request
        as sent (no credentials) and the response."""
        session = current_session()
        count = 0 if reset_counter or session.usage_log is None else session.usage_log.count
        session.usage_log = UsageLog(history_dict, bool(compact), count)

    @classmethod
    def stop_logging(cls) -> None:
        current_session().usage_log = None

    @classmethod
    def print_usage_summary(cls) -> None:
        """Print the total cost and the tokens per model of the calls logged since `start_logging()`."""
        log = current_session().usage_log
        if log is None:
            print("No usage summary available.", flush=True)
            return
        log.print_summary()

    @classmethod
    def test(cls, data, config=None, eval_func=None, use_cache=True, agg_method="avg",
             return_responses_and_per_instance_result=False, logging_level=logging.WARNING, concurrency="auto",
             **more_config):
        """Evaluate `config` over `data` with `eval_func(responses, **point)`; aggregate with `agg_method`.

        Both spellings: `test(data, config, eval_func)` (the seed's) and `test(data, eval_func, **config)`
        (pyautogen 0.1.x: the request settings as keyword arguments). Returns None when neither this call nor
        an earlier `tune` gave an eval_func. Requests for different points run concurrently (`concurrency`: "auto"
        adapts to each endpoint up to its model's ceiling, a number pins it);
        results equal a sequential run's.
        """
        session = current_session()
        if callable(config):  # 0.1.x: the second positional argument is the eval_func
            config, eval_func = None, config
        if isinstance(config, str):
            config = load_config(config)
        if more_config:
            config = {**(config or {}), **more_config}
        if config is None:
            raise ConfigError("test() needs a config: test(data, config, eval_func) or test(data, eval_func, **config)")
        if isinstance(config, dict):
            config = translate(config)
        eval_func = eval_func or session.last_eval_func  # the seed API: the last tune()'s, in this session
        if eval_func is None:
            logger.warning("test() needs an eval_func, or a tune() before it that had one")
            return None
        with _logging_level(logging_level):
            return evaluate_config(session.requester.for_run(), session.seed, data, config, eval_func, use_cache,
                                   agg_method, return_responses_and_per_instance_result, concurrency,
                                   cls._force_chat, progress=logging_level <= logging.WARNING)

    @classmethod
    def tune(cls, data, metric, mode, eval_func, log_file_name=None, inference_budget=None,
             optimization_budget=None, num_samples=1, logging_level=logging.WARNING, concurrency="auto", trials=None,
             ray=None, selection="best", agg_method="avg", **config):
        """Search inference settings for `data` under the budgets; returns (best_config, analysis).

        The config returned is the cheapest of the equally good complete trials: `selection="best"` breaks
        exact ties on cost, `selection="1se"` takes the cheapest within one standard error of the best.
        `agg_method` aggregates the metric over the points as `test` does (a name: avg, median, min, max, sum;
        a callable; or a dict per metric); the selection and the intervals are the aggregate's.
        Without `model`, the models a `config_list` names are searched (0.1.x's default models when it names
        none). `trials` run in flight together on this process's event loop, or on Ray workers with
        `ray={"address": None | "auto" | "ray://host:port", "workers": 2}`."""
        session = current_session()
        space = translate(config)
        if "model" not in space and space.get("config_list") and not any(
                isinstance(e, dict) and e.get("model") for e in space["config_list"]):
            models = OLD_DEFAULT_CHAT_MODELS if cls._force_chat else OLD_DEFAULT_MODELS
            logger.warning("tune(): neither `model` nor the config_list names a model: searching 0.1.x's default "
                           "models %s on every entry (pass model=... to choose)", models)
            space = {**space, "model": _domains.choice(models)}
        with _logging_level(logging_level):
            spec = TuneSpec(data, metric, mode, eval_func, inference_budget=inference_budget,
                            optimization_budget=optimization_budget, num_samples=num_samples,
                            log_file_name=log_file_name, concurrency=concurrency, trials=trials, ray=ray,
                            selection=selection, agg_method=agg_method,
                            force_chat=cls._force_chat,
                            progress=logging_level <= logging.WARNING, space=space)
            tuner = Tuner(spec, session.requester.for_run(), session.seed)
            session.last_eval_func = eval_func
            _last_tunes[session] = _LastTune(spec.data, tuner.space, agg_method)
            best, analysis = tuner.run()
            # the endpoints (and their keys) are the caller's, not the tuned config's: 0.1.x code passes its
            # config_list again beside it, `create(context, config_list=cl, **config)`
            return {k: v for k, v in best.items() if k != "config_list"}, analysis

    @classmethod
    def _construct_params(cls, context, config, prompt=None, messages=None, allow_format_str_template=False):
        """0.1.x's private helper: the request parameters create() sends for `config` in `context`.

        `prompt` / `messages` replace the config's. A chat model (this engine's catalog says so, or its name is
        not a text-completion model's; always for ChatCompletion) gets `messages`, a prompt becoming one user
        message; a text-completion model gets `prompt`. Templates are filled by create()'s own templating,
        which fills string templates whatever `allow_format_str_template` says (see the README's differences).
        """
        params = dict(config)
        prompt = config.get("prompt") if prompt is None else prompt
        messages = config.get("messages") if messages is None else messages
        chat = cls._force_chat or _is_chat(config["model"])
        if prompt is None and messages is None:
            raise ConfigError("config has neither `prompt` nor `messages`")
        if prompt is None:
            if not chat:
                raise ConfigError(f"model {config['model']!r} is a text-completion model: give `prompt`, not `messages`")
            params["messages"] = render_messages(messages, context) if context else messages
        elif chat:
            params["messages"] = [{"role": "user", "content": render(prompt, context)}]
            params.pop("prompt", None)
        else:
            params["prompt"] = render(prompt, context)
        return params

    @classmethod
    def _eval(cls, config: dict, prune: bool = True, eval_only: bool = False) -> dict:
        """0.1.x's private helper: `config` evaluated on `Completion.data` (the last tune's points unless set)
        with the last tune's eval_func; the metrics aggregated as that tune did, with `cost` and
        `inference_cost` (as `test`). `config` may be a search-space sample (`analysis.best_config`: indices,
        `subspace`) or a plain config. Always the full evaluation (0.1.x's `prune=False, eval_only=True`):
        the staged, pruned evaluation runs only inside tune."""
        session, last = current_session(), _last_tune()
        if last.data is None or session.last_eval_func is None:
            raise ConfigError("_eval() needs a tune() before it (its eval_func), and Completion.data or that tune's data")
        if last.space is not None:  # as 0.1.x: a sample of the tune's space, sent to the tune's config_list
            if "subspace" in config or isinstance(config.get("prompt", config.get("messages")), int):
                config = last.space.decode(config)
            elif "config_list" not in config and last.space.endpoints(config.get("model")):
                config = {**config, "config_list": last.space.endpoints(config.get("model"))}
        return evaluate_config(session.requester.for_run(), session.seed, last.data, translate(config),
                               session.last_eval_func, agg_method=last.agg_method, force_chat=cls._force_chat,
                               progress=False)


def _is_chat(model: str) -> bool:
    """Whether create() sends `model` to the chat endpoint: its catalog entry says, else its name."""
    try:
        return current_session().catalog.get(model).chat
    except UnknownModelError:
        return inferred_spec(model, {"api_type": "openai"}).chat


class ChatCompletion(Completion):
    """A class for OpenAI API ChatCompletion: always the chat endpoint."""

    _force_chat = True
