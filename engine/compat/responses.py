"""The response `create` returns: the provider's JSON as a dict that also reads like the openai v1 objects.

Code written for the seed library indexes it (`r["choices"][0]["message"]["content"]`); code written for the
openai v1 client reads attributes (`r.choices[0].message.content`, `r.usage.total_tokens`, `r.model_dump()`).
Both work on the one object. Nested values are wrapped only when read as attributes, so building one costs a
shallow copy (the cache-hit path stays fast, `make bench`).
"""
from __future__ import annotations

import copy
from typing import Any


class Response(dict):
    """A dict subclass with attribute access (read and write) at every depth, and `model_dump()`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return _attributed(self[name])
        except KeyError:
            raise AttributeError(f"response has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self, **_ignored) -> dict:
        """A plain, deep copy (the openai v1 objects' spelling)."""
        return copy.deepcopy(dict(self))

    to_dict = to_dict_recursive = model_dump  # the openai 0.x objects' spellings

    def __deepcopy__(self, memo):
        return Response(copy.deepcopy(dict(self), memo))


def _attributed(value: Any) -> Any:
    """Dicts read as attributes become Responses sharing the same nested values; lists map their items."""
    if type(value) is dict:
        return _View(value)
    if type(value) is list:
        return [_attributed(v) for v in value]
    return value


class _View(Response):
    """A nested object read through an attribute: writes go to the dict it was made from, too."""

    __slots__ = ("_source",)

    def __init__(self, source: dict):
        super().__init__(source)
        object.__setattr__(self, "_source", source)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value
        self._source[name] = value
