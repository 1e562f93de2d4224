import pytest

from engine import Completion
from engine.session import default_session
from fake_openai import FakeOpenAI


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh cache root for the test; restores the default afterwards."""
    Completion.set_cache(41, str(tmp_path / "cache"))
    yield tmp_path / "cache"
    Completion.set_cache()


@pytest.fixture
def fake_models(fake, cache_dir):
    """Register catalog entries that point at the fake server (chat, text, and one that ignores n)."""
    catalog = default_session().catalog
    price = {"prompt": 0.001, "completion": 0.002}
    for name, chat, ignores_n in (("fake-chat", True, False), ("fake-text", False, False),
                                  ("fake-ignores-n", True, True)):
        catalog.add({"name": name, "provider": "compatible", "chat": chat, "base_url": fake.base_url,
                     "price_per_1k": price, "ignores_n": ignores_n})
    fake.ignore_n = False
    return fake
