"""The documented seed API (`Completion`, `ChatCompletion`): a thin facade over the engine's modules."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .keys import get_key
from .requests import prepare
from .session import DEFAULT_CACHE_PATH, DEFAULT_SEED, default_session


class Completion:
    """A class for OpenAI completion API; also ChatCompletion, Azure OpenAI and compatible endpoints."""

    _force_chat = False

    @staticmethod
    def get_key(config):
        return get_key(config)

    @classmethod
    def set_cache(cls, seed: int = DEFAULT_SEED, cache_path: str = DEFAULT_CACHE_PATH) -> None:
        """Responses are cached under `{cache_path}/{seed}`; different seeds, different caches."""
        default_session().set_cache(seed, cache_path)

    @classmethod
    def create(cls, context: Optional[Dict] = None, use_cache: Optional[bool] = True, **config) -> dict:
        """Make a completion for a context: templates in `prompt`/`messages` are filled from `context`."""
        session = default_session()
        requests = prepare(config, context, session.catalog, session.seed, cls._force_chat)
        return session.requester.run(requests, use_cache).response

    @classmethod
    def cost(cls, model: str, response: dict) -> float:
        """Dollars for a response, from its reported usage and the price table in conf/model/."""
        return default_session().catalog.cost(model, response.get("usage"))

    @classmethod
    def extract_text(cls, response: dict) -> List[str]:
        """The texts of all choices, for chat and text completion alike."""
        out = []
        for choice in response["choices"]:
            if "message" in choice and choice["message"] is not None:
                out.append(choice["message"].get("content") or "")
            else:
                out.append(choice.get("text") or "")
        return out


class ChatCompletion(Completion):
    """A class for OpenAI API ChatCompletion: always the chat endpoint."""

    _force_chat = True


