"""Shared fixtures and helpers: sessions scoped to a test, the loopback fake server and its models, the Hydra
compose helper, the eval_func most tests grade with, free ports."""
import socket

import pytest
from hydra import compose, initialize_config_dir

from engine.core.config import register_configs
from engine.core.models import conf_dir
from engine.session import Session
from fake_openai import FakeOpenAI, landscape_responder

PRICE = {"prompt": 0.001, "completion": 0.002}  # USD per 1K tokens of the fake models
# twelve sums, and two prompts of which the fake server's landscape answers the second one right
DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a, b in
        [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (2, 2), (4, 5), (6, 1), (8, 3)]]
PROMPTS = ["{question}", "Think step by step. {question}"]


def eval_func(responses, **point):
    """Right when an answer starts with the expected number (the fake server answers sums first)."""
    ok = [r.split()[:1] == [str(point["answer"])] for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


def composed(*overrides):
    """The run config Hydra composes from conf/ with these overrides (not yet validated)."""
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def wait_until(condition, seconds: float = 60.0, every: float = 0.01) -> bool:
    """Poll `condition` until it holds or `seconds` pass; whether it held (a wait on an event, not a nap)."""
    import threading
    import time

    deadline, tick = time.monotonic() + seconds, threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        tick.wait(every)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_fake_models(catalog, base_url: str) -> None:
    """Catalog entries on the fake server: chat, text completion, and a chat model that ignores n."""
    for name, chat, ignores_n in (("fake-chat", True, False), ("fake-text", False, False),
                                  ("fake-ignores-n", True, True)):
        catalog.add({"name": name, "provider": "compatible", "chat": chat, "base_url": base_url,
                     "price_per_1k": PRICE, "ignores_n": ignores_n})


@pytest.fixture(scope="session")
def process_session():
    """Clients, loop and embedded server shared by the whole run (a test's own session derives from it)."""
    session = Session()
    yield session
    session.close()


@pytest.fixture
def session(process_session, tmp_path):
    """The current session for one test: its own cache under tmp_path and its own copy of the catalog."""
    with process_session.derive(seed=41, cache_path=str(tmp_path / "cache"),
                                catalog=process_session.catalog.copy()) as scoped:
        yield scoped


@pytest.fixture
def cache_dir(session, tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_models(fake, session):
    register_fake_models(session.catalog, fake.base_url)
    fake.ignore_n = False
    return fake


@pytest.fixture
def landscape(fake_models):
    """The fake models, answering with the tuning landscape (fake_openai.landscape_responder)."""
    fake_models.responder = landscape_responder
    return fake_models
