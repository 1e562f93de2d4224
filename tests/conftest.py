"""The pytest fixtures: sessions scoped to a test, the loopback fake server and its models. The helpers the
tests share (data, prices, eval_func, composed, wait_until, free_port, ...) are in tests/support/helpers.py,
importable from child processes as well: `from tests.support.helpers import ...`."""
import pytest

from engine.session import Session
from tests.support.fake_openai import FakeOpenAI, landscape_responder
from tests.support.helpers import register_fake_models


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
    """The fake models, answering with the tuning landscape (tests.support.fake_openai.landscape_responder)."""
    fake_models.responder = landscape_responder
    return fake_models
