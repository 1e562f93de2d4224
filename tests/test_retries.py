"""One loop makes every attempt of a request: its deadline covers them all, a Retry-After that cannot fit gives
up at once, and every attempt carries the same Idempotency-Key; over HTTP with the real openai client and the
loopback fake server."""
import time
from types import SimpleNamespace

import pytest

from engine import Completion, ProviderError
from engine.requests.providers import RetryPolicy


def headers(request: dict) -> dict:
    return {k.lower(): v for k, v in request["headers"].items()}


def read_timeouts(fake) -> list[float]:
    """The timeout each attempt had, as the SDK tells the server (x-stainless-read-timeout)."""
    return [float(headers(r)["x-stainless-read-timeout"]) for r in fake.requests]


def test_the_retry_period_bounds_the_whole_request_every_attempt_included(fake_models):
    fake_models.fault_rule = lambda i: {"stall": 3.0}  # every attempt outlasts its timeout
    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        Completion.create(model="fake-chat", prompt="hi", request_timeout=1.0, max_retry_period=2.5)
    elapsed = time.monotonic() - start
    assert info.value.retryable and len(fake_models.requests) > 1
    assert elapsed < 4.0, f"{elapsed:.2f} s for a 2.5 s retry period and 1 s attempts"
    last_start = fake_models.requests[-1]["time"] - fake_models.requests[0]["time"]
    assert last_start < 2.5  # no attempt begins after the deadline


def test_attempts_after_the_first_have_their_timeout_cut_to_the_time_left(fake_models, session):
    session.set_requests(jitter=0.0)
    fake_models.fault_rule = lambda i: {"stall": 3.0}
    with pytest.raises(ProviderError):
        Completion.create(model="fake-chat", prompt="hi", request_timeout=1.0, max_retry_period=1.5,
                          retry_wait_time=0.05)
    first, *later = read_timeouts(fake_models)
    assert first == 1.0  # the first attempt has its whole timeout
    assert later and all(t < 0.9 for t in later), later  # ~0.45 s were left after 1 s and a 0.05 s wait


def test_a_zero_retry_period_still_gives_the_one_attempt_its_whole_timeout(fake_models, session):
    session.set_requests(max_retry_period=0.0)
    fake_models.fail_next({"stall": 1.0})
    with pytest.raises(ProviderError):
        Completion.create(model="fake-chat", prompt="hi", request_timeout=0.3)
    assert fake_models.wait_idle()
    assert len(fake_models.requests) == 1 and read_timeouts(fake_models) == [0.3]


def test_every_attempt_of_a_request_carries_the_same_idempotency_key(fake_models):
    fake_models.fail_next({"status": 500}, {"status": 500})
    r = Completion.create(model="fake-chat", prompt="What is 2 + 3?", max_retry_period=10, retry_wait_time=0.05)
    assert Completion.extract_text(r) == ["5"] and len(fake_models.requests) == 3
    keys = {headers(request).get("idempotency-key") for request in fake_models.requests}
    assert len(keys) == 1 and keys.pop().startswith("engine-")
    Completion.create(model="fake-chat", prompt="What is 4 + 4?")
    first, second = headers(fake_models.requests[0]), headers(fake_models.requests[3])
    assert second["idempotency-key"] != first["idempotency-key"]


def test_a_retry_after_longer_than_the_retry_period_gives_up_at_once(fake_models):
    fake_models.fail_next({"status": 429, "headers": {"Retry-After": "30"}})
    start = time.monotonic()
    with pytest.raises(ProviderError, match="HTTP 429") as info:
        Completion.create(model="fake-chat", prompt="hi", max_retry_period=2)
    assert time.monotonic() - start < 1.5 and info.value.retryable
    assert fake_models.wait_idle() and len(fake_models.requests) == 1


def test_a_retry_after_longer_than_what_is_left_gives_up_at_once(fake_models, session):
    """The hint fits the whole period (2.4 < 2.5 s) but not what is left of it after a first failure."""
    session.set_requests(jitter=0.0)
    fake_models.fail_next({"status": 500}, {"status": 429, "headers": {"Retry-After": "2.4"}})
    start = time.monotonic()
    with pytest.raises(ProviderError, match="HTTP 429"):
        Completion.create(model="fake-chat", prompt="hi", max_retry_period=2.5, retry_wait_time=0.3)
    assert time.monotonic() - start < 2.0
    assert fake_models.wait_idle() and len(fake_models.requests) == 2


def test_a_zero_retry_period_makes_exactly_one_attempt(fake_models, session):
    session.set_requests(max_retry_period=0.0)
    fake_models.fail_next({"status": 500}, {"status": 500})
    with pytest.raises(ProviderError, match="HTTP 500") as info:
        Completion.create(model="fake-chat", prompt="hi")
    assert info.value.retryable
    assert fake_models.wait_idle() and len(fake_models.requests) == 1


def test_a_config_list_entry_before_the_last_makes_one_attempt_then_the_next_is_used(fake_models):
    """config_list gives every entry but the last a retry period of 0."""
    fake_models.fail_next({"status": 500}, {"status": 500})
    r = Completion.create(model="fake-chat", prompt="What is 1 + 5?", config_list=[{}, {"model": "fake-text"}])
    assert Completion.extract_text(r) == ["6"]
    assert [q["path"] for q in fake_models.requests] == ["/v1/chat/completions", "/v1/completions",
                                                          "/v1/completions"]  # the last entry retries


def test_a_bad_answer_with_http_200_is_not_retried(fake_models):
    fake_models.fail_next({"body": b"<html>502 Bad Gateway</html>"})
    with pytest.raises(ProviderError, match="not JSON") as info:
        Completion.create(model="fake-chat", prompt="hi", max_retry_period=10)
    assert info.value.possibly_billed
    assert fake_models.wait_idle() and len(fake_models.requests) == 1


class _Hinted(Exception):
    def __init__(self, **hint):
        super().__init__("hinted")
        self.response = SimpleNamespace(headers=hint)


def test_the_wait_doubles_up_to_max_wait_and_a_longer_retry_after_wins():
    policy = RetryPolicy(max_total_seconds=60, initial_wait=0.5, max_wait=3.0, jitter=0.0)
    assert [policy.wait(n, _Hinted()) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.wait(1, _Hinted(**{"retry-after": "7"})) == 7.0  # beyond max_wait: the server asked for it
    assert policy.wait(3, _Hinted(**{"retry-after-ms": "100"})) == 2.0  # shorter than the backoff
    assert policy.wait(10_000, _Hinted()) == 3.0  # no overflow


@pytest.mark.parametrize("name", ["max_retry_period", "retry_timeout"])
def test_a_calls_own_zero_retry_period_is_0_1_xs_do_not_retry(fake_models, name):
    """pyautogen 0.1.x passes max_retry_period=0 (or retry_timeout=0) to mean one attempt, no retry."""
    fake_models.fail_next({"status": 500})
    assert Completion.create(prompt="hi", model="fake-chat", max_tokens=1, raise_on_ratelimit_or_timeout=False,
                             **{name: 0}) == -1
    assert fake_models.wait_idle() and len(fake_models.requests) == 1
