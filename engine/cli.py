"""What every command-line entry point shares: quiet HTTP client logs and readable errors."""
from __future__ import annotations

import contextlib
import logging
import sys

from .errors import EngineError

NOISY = ("httpx", "httpx2", "openai", "urllib3", "flaml", "optuna", "matplotlib", "mlflow", "alembic")


def quiet_libraries() -> None:
    """Hydra logs at INFO; per-request HTTP lines would drown the progress bars."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def friendly_errors():
    """An EngineError ends the command with its message (exit code 1), Ctrl-C with a word on resuming."""
    try:
        yield
    except EngineError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        print("\ninterrupted: every response paid for is in the cache; rerun the same command to go on "
              "without paying for them again", file=sys.stderr)
        raise SystemExit(130) from None
