"""Exception classes: every failure the engine raises is one of these, never a sentinel value."""


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A request or search config is invalid; raised before anything is sent or spent."""


class TemplateKeyError(ConfigError, KeyError):
    """A prompt/messages template names a key that the context (data point) lacks."""

    def __init__(self, key: str, index: int | None = None):
        self.key = key
        self.index = index
        where = f" in data point {index}" if index is not None else " in the context"
        super().__init__(f"template key {key!r} is missing{where}")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.args[0]


class UnknownModelError(ConfigError, KeyError):
    """A model has no entry in the model catalog (and so no price)."""

    def __init__(self, model: str, catalog_dir: str):
        self.model = model
        super().__init__(
            f"unknown model {model!r}: it has no entry in the price table; add "
            f"{catalog_dir}/{model}.yaml with `name`, `provider` and `price_per_1k: {{prompt: .., completion: ..}}`"
        )

    def __str__(self) -> str:
        return self.args[0]


class CacheError(EngineError):
    """The response cache cannot be opened or written (bad path, permissions, ...)."""


class ProviderError(EngineError):
    """A provider refused or failed a request in a way the engine could not recover from."""

    def __init__(self, message: str, endpoint: str, status: int | None = None, retryable: bool = False):
        self.endpoint = endpoint
        self.status = status
        self.retryable = retryable
        self.spent = 0.0  # dollars paid before the failure (choices of a fan-out that did answer)
        self.possibly_billed = False  # an HTTP 200 whose answer could not be used: its worst case is kept
        super().__init__(f"{endpoint}: {message}")


class AuthenticationError(ProviderError):
    """The endpoint refused the credentials (401/403). The key itself is never printed."""


class EmbeddedServerError(EngineError):
    """The embedded llama.cpp server could not be started or did not become ready."""


class BudgetError(EngineError):
    """A budget is invalid, or a request does not fit in what is left of it."""


class BudgetExhausted(BudgetError):
    """The budget has no room for the next attempt of a request (after one that may have been billed)."""


class BudgetOverrunError(BudgetError):
    """A response cost more than its worst-case bound: the bound (a model's config) is wrong.

    `paid` is set once every request that was in flight has been answered (their answers may be over their
    bounds too, and the server bills them whatever the engine does), so the figure shown is never below the bill.
    """

    paid: float | None = None

    def __str__(self) -> str:
        if self.paid is None:
            return self.args[0]
        return (f"{self.args[0]} Dollars paid in this run, every request that was in flight when it stopped "
                f"included: ${self.paid:.6f}.")


class SearchFailedError(EngineError):
    """Every trial of a tune failed for a reason other than money (the provider refused each request)."""


class MissingCredentialsError(ConfigError):
    """An endpoint needs a key that the environment does not hold."""
