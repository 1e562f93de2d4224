"""What every command-line entry point shares: quiet HTTP client logs and readable errors."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from .core.errors import EngineError
from .core.secret_shapes import command_line_refusal

NOISY = ("httpx", "httpx2", "openai", "urllib3", "flaml", "optuna", "matplotlib", "mlflow", "alembic")


def refuse_secrets_on_the_command_line(argv: list[str]) -> None:
    """Anything key-shaped given as a Hydra override (`+model.api_key=...`, `+model.API_KEY=`, a key pasted as
    `model.api_key_env`, `+hydra.job.env_set.OPENAI_API_KEY=`, a `user:key@` URL) would be written to
    .hydra/*.yaml before any check of the engine's runs: refuse it before Hydra starts, without echoing it."""
    for arg in argv[1:]:
        reason = command_line_refusal(arg)
        if reason:
            raise SystemExit(f"error: {reason} (Hydra would write it to .hydra/*.yaml); set the environment "
                             "variable instead (OPENAI_API_KEY, AZURE_OPENAI_API_KEY, or the one the model's "
                             "api_key_env names)")


def report_fatal_signals() -> None:
    """A part that dies by a signal (SIGSEGV or SIGBUS in a native library: llama.cpp, LMDB) prints which
    signal and where on stderr, instead of ending with nothing but an exit code."""
    import faulthandler

    if not faulthandler.is_enabled():
        faulthandler.enable()


def interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`, a container stopping) takes Ctrl-C's path: no new request, those in
    flight are awaited and cached, the MLflow run ends KILLED instead of staying RUNNING."""
    import signal

    def terminated(signum, frame):
        raise KeyboardInterrupt(f"terminated by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, terminated)


def apply_sandbox(mode: str | None) -> None:
    """`sandbox=os|unsafe` from the config becomes the process's ENGINE_SANDBOX, which eval_funcs (and Ray
    workers started after it) read through engine.tasks.sandbox; None leaves the environment's choice."""
    from .tasks.sandbox import MODE_ENV

    if mode is not None:
        os.environ[MODE_ENV] = mode


def launch(main, config_name: str = "config") -> None:
    """What every `python -m engine.<entry>` does before Hydra composes: refuse key-shaped overrides and
    mistyped keys, take SIGTERM as Ctrl-C, report a native crash in words, register the config schemas; then
    `main()`, or print each job's config for `--cfg job` (engine/show_config.py)."""
    from .core.config import PromoteConfig, RunConfig, register_configs
    from .show_config import print_job_configs, refuse_unknown_keys, wants_job_config

    refuse_secrets_on_the_command_line(sys.argv)
    refuse_unknown_keys(sys.argv, PromoteConfig if config_name == "promote" else RunConfig)
    interrupt_on_sigterm()
    report_fatal_signals()
    register_configs()
    if wants_job_config(sys.argv):
        quiet_libraries()
        with friendly_errors():
            print_job_configs(sys.argv, config_name)
        return
    main()


def quiet_libraries() -> None:
    """Hydra logs at INFO; per-request HTTP lines would drown the progress bars. MLflow's notices say nothing
    about this project: its schema and type-hint warnings, and the "View run ..." lines it prints after every
    run it ends on a tracking server (the summary says where the runs are, once)."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    warnings.filterwarnings("ignore", message=r".*[Ii]nferred schema contains integer column")
    warnings.filterwarnings("ignore", message=r".*type hint", module=r"mlflow(\.|$)")
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"mlflow(\.|$)")


def job_log(message: str, level: int = logging.INFO, exc_info=None) -> None:
    """Write to the job's log file (Hydra's `<job>.log` in the run folder) only: the terminal already shows
    the summary or the error, printed plainly."""
    record = logging.LogRecord("engine", level, __file__, 0, message, None, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextlib.contextmanager
def friendly_errors():
    """An EngineError ends the command with its message (exit code 1), Ctrl-C with a word on resuming."""
    try:
        yield
    except EngineError as exc:
        job_log(f"error: {exc}", logging.ERROR)
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        job_log("interrupted", logging.WARNING)
        print("\ninterrupted: every response paid for is in the cache; rerun the same command to go on "
              "without paying for them again", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        job_log(f"failed: {type(exc).__name__}: {exc}", logging.ERROR, (type(exc), exc, exc.__traceback__))
        raise
