"""A small generic registry: register by decorator, look up by name, fail at once on an unknown name."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ..core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item
        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
