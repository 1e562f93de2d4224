"""What every command-line entry point shares: quiet HTTP client logs and readable errors."""
from __future__ import annotations

import contextlib
import logging
import sys

from .errors import EngineError
from .public import SECRET_KEYS

NOISY = ("httpx", "httpx2", "openai", "urllib3", "flaml", "optuna", "matplotlib", "mlflow", "alembic")


def refuse_secrets_on_the_command_line(argv: list[str]) -> None:
    """Credentials given as Hydra overrides (`+model.api_key=...`) would be written to .hydra/*.yaml before
    any check of the engine's runs: refuse them before Hydra starts."""
    for arg in argv[1:]:
        key = arg.split("=", 1)[0].lstrip("+~")
        if "=" in arg and key.rsplit(".", 1)[-1] in SECRET_KEYS:
            raise SystemExit(f"error: {key}: credentials are never taken from the command line (Hydra would write "
                             "them to .hydra/*.yaml); set the environment variable instead (OPENAI_API_KEY, "
                             "AZURE_OPENAI_API_KEY, or the one the model's api_key_env names)")


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
