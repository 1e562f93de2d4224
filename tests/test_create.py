"""The seed API's create/cost/extract_text over HTTP with the real openai client and a loopback server."""
import time

import pytest

from engine import AuthenticationError, ChatCompletion, Completion, ConfigError, ProviderError, TemplateKeyError
from engine.core.errors import UnknownModelError

FAST_RETRY = {"max_retry_period": 10}


def test_chat_response_is_an_openai_shaped_dict(fake_models):
    r = Completion.create(context={"a": 1, "b": 2}, model="fake-chat", prompt="What is {a} + {b}?", max_tokens=5)
    assert isinstance(r, dict) and r.choices[0].message.content == "3"  # a dict that also reads like openai v1
    assert r["choices"][0]["message"]["content"] == "3"
    assert r["usage"]["prompt_tokens"] == 5 and r["model"] == "fake-chat"
    assert Completion.extract_text(r) == ["3"]
    body = fake_models.completions()[0]
    assert body["messages"] == [{"role": "user", "content": "What is 1 + 2?"}]
    assert fake_models.requests[0]["path"] == "/v1/chat/completions"


def test_text_model_goes_to_the_completions_endpoint(fake_models):
    r = Completion.create(context={"x": "hello"}, model="fake-text", prompt="say {x}")
    assert Completion.extract_text(r) == ["echo say hello"]
    assert fake_models.requests[0]["path"] == "/v1/completions"
    assert "text" in r["choices"][0]


def test_chat_completion_always_uses_chat_and_messages_templates(fake_models):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is {q}?"}]
    r = ChatCompletion.create(context={"q": "2 + 2"}, model="fake-chat", messages=msgs)
    assert ChatCompletion.extract_text(r) == ["4"]
    assert fake_models.completions()[0]["messages"][1]["content"] == "What is 2 + 2?"


def test_callable_template_and_stop_as_string_or_list(fake_models):
    Completion.create(context={"w": "alpha beta"}, model="fake-chat", prompt=lambda d: f"{d['w']} gamma", stop="beta")
    Completion.create(context={"w": "x"}, model="fake-chat", prompt="{w} y", stop=["y", "z"])
    first, second = fake_models.completions()
    assert first["messages"][0]["content"] == "alpha beta gamma" and first["stop"] == "beta"
    assert second["stop"] == ["y", "z"]


def test_cache_hit_returns_the_same_dict_without_a_network_call(fake_models):
    config = dict(model="fake-chat", prompt="What is {a} + 1?", temperature=0.5)
    first = Completion.create(context={"a": 5}, **config)
    before = len(fake_models.requests)
    second = Completion.create(context={"a": 5}, **config)
    assert second == first and len(fake_models.requests) == before
    Completion.create(context={"a": 5}, use_cache=False, **config)
    assert len(fake_models.requests) == before + 1


def test_seed_in_config_selects_another_cache(fake_models, cache_dir):
    Completion.create(model="fake-chat", prompt="hi", seed=7)
    Completion.create(model="fake-chat", prompt="hi", seed=7)
    Completion.create(model="fake-chat", prompt="hi", seed=8)
    assert len(fake_models.requests) == 2
    assert (cache_dir / "7").is_dir() and (cache_dir / "8").is_dir()
    assert "seed" not in fake_models.completions()[0]  # the cache seed is not a sampling parameter


def test_cost_uses_reported_usage_and_the_price_table(fake_models):
    r = Completion.create(model="fake-chat", prompt="one two three", max_tokens=2)
    expected = r["usage"]["prompt_tokens"] * 0.001 / 1000 + r["usage"]["completion_tokens"] * 0.002 / 1000
    assert Completion.cost("fake-chat", r) == pytest.approx(expected)
    with pytest.raises(UnknownModelError, match="no-such-model.*conf/model/no-such-model.yaml"):
        Completion.cost("no-such-model", r)


@pytest.mark.parametrize("config, match", [
    (dict(model="fake-chat", prompt="{missing} here"), "'missing'"),
    (dict(model="fake-chat", prompt="x", messages=[{"role": "user", "content": "y"}]), "not both"),
    (dict(model="nope", prompt="x"), "unknown model 'nope'.*price"),
    (dict(model="fake-chat", prompt="x", n=0), "n must be a positive integer"),
    (dict(model="fake-chat", prompt="x", max_tokens=-3), "max_tokens must be a positive integer"),
    (dict(model="fake-text", messages=[{"role": "user", "content": "y"}]), "text-completion model"),
])
def test_bad_input_fails_before_any_request(fake_models, config, match):
    with pytest.raises(ConfigError, match=match):
        Completion.create(context={"a": 1}, **config)
    assert fake_models.requests == []


def test_missing_template_key_is_named(fake_models):
    with pytest.raises(TemplateKeyError) as info:
        Completion.create(context={"a": 1}, model="fake-chat", prompt="{a} and {b}")
    assert info.value.key == "b" and "'b'" in str(info.value)


@pytest.mark.parametrize("fault", [
    {"status": 429, "headers": {"Retry-After": "0.3"}},
    {"status": 500},
    {"status": 503, "headers": {"retry-after-ms": "50"}},
    {"drop": True},
])
def test_transient_faults_are_retried(fake_models, fault):
    fake_models.fail_next(fault, fault)
    r = Completion.create(model="fake-chat", prompt="What is 2 + 3?", **FAST_RETRY)
    assert Completion.extract_text(r) == ["5"]
    assert len(fake_models.requests) == 3


def test_retry_after_is_honoured(fake_models):
    fake_models.fail_next({"status": 429, "headers": {"Retry-After": "1.2"}})
    Completion.create(model="fake-chat", prompt="hi", **FAST_RETRY)
    gap = fake_models.requests[1]["time"] - fake_models.requests[0]["time"]
    assert gap >= 1.2


def test_timeouts_are_retried(fake_models):
    fake_models.fail_next({"stall": 1.5})
    r = Completion.create(model="fake-chat", prompt="What is 1 + 1?", request_timeout=0.5, **FAST_RETRY)
    assert Completion.extract_text(r) == ["2"]
    assert len(fake_models.requests) == 2


def test_retries_stop_after_the_configured_total_time(fake_models):
    fake_models.fail_next(*[{"status": 500}] * 100)
    with pytest.raises(ProviderError, match="HTTP 500") as info:
        Completion.create(model="fake-chat", prompt="hi", max_retry_period=1.5)
    assert info.value.retryable and 2 <= len(fake_models.requests) < 10


@pytest.mark.parametrize("status, exc", [(400, ProviderError), (401, AuthenticationError),
                                         (403, AuthenticationError), (404, ProviderError)])
def test_client_errors_fail_at_once_with_the_providers_message(fake_models, monkeypatch, status, exc):
    secret = "sk-test-SECRET0123456789abcdef"
    fake_models.fail_next({"status": status, "message": f"nope: Incorrect API key provided: {secret}"})
    with pytest.raises(exc) as info:
        Completion.create(model="fake-chat", prompt="hi", api_key=secret)
    assert len(fake_models.requests) == 1
    text = str(info.value)
    assert f"HTTP {status}" in text and "nope" in text and fake_models.base_url in text
    assert secret not in text and "SECRET" not in text


def test_config_list_falls_back_to_the_next_endpoint(fake_models):
    down = "http://127.0.0.1:9/v1"  # discard port: connection refused
    config_list = [{"base_url": down, "max_retry_period": 0.5}, {"model": "fake-text"}]
    r = Completion.create(context={"v": 4}, model="fake-chat", prompt="What is {v} + 4?", config_list=config_list)
    assert Completion.extract_text(r) == ["8"]
    assert fake_models.requests[-1]["path"] == "/v1/completions"


def test_config_list_with_a_refused_key_falls_back(fake_models):
    fake_models.fail_next({"status": 401})
    r = Completion.create(model="fake-chat", prompt="What is 3 + 3?", config_list=[{"api_key": "bad"}, {}])
    assert Completion.extract_text(r) == ["6"]


def test_all_endpoints_failing_names_each(fake_models):
    fake_models.fail_next({"status": 404}, {"status": 401})
    with pytest.raises(ProviderError, match="all 2 endpoints failed") as info:
        Completion.create(model="fake-chat", prompt="x", config_list=[{}, {"model": "fake-text"}])
    assert "HTTP 404" in str(info.value) and "HTTP 401" in str(info.value)


def test_n_means_n_choices_where_the_provider_returns_them(fake_models):
    r = Completion.create(model="fake-chat", prompt="What is 1 + 1?", n=3)
    assert len(fake_models.requests) == 1 and len(r["choices"]) == 3


def test_n_is_fanned_out_for_providers_that_ignore_it(fake_models):
    r = Completion.create(model="fake-ignores-n", prompt="What is 1 + 1?", n=3, max_tokens=4)
    bodies = fake_models.completions()
    assert len(bodies) == 3 and all("n" not in b for b in bodies)
    assert len({b["seed"] for b in bodies}) == 3
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    assert r["usage"]["completion_tokens"] == sum(len(t.split()) for t in Completion.extract_text(r))
    assert r["usage"]["prompt_tokens"] == 3 * 5
    again = Completion.create(model="fake-ignores-n", prompt="What is 1 + 1?", n=3, max_tokens=4)
    assert again == r and len(fake_models.requests) == 3


def test_the_api_key_never_reaches_the_cache(fake_models, cache_dir, monkeypatch):
    secret = "sk-live-VERYSECRET-0123456789"
    monkeypatch.setenv("FAKE_KEY", secret)
    Completion.create(model="fake-chat", prompt="hi", api_key_env="FAKE_KEY", organization="org-SECRETORG")
    Completion.create(model="fake-chat", prompt="hello", api_key=secret)
    headers = {k.lower(): v for k, v in fake_models.requests[0]["headers"].items()}
    assert headers["authorization"] == f"Bearer {secret}"
    blobs = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    assert secret.encode() not in blobs and b"VERYSECRET" not in blobs and b"SECRETORG" not in blobs
    # the same request with another key is the same cache entry
    Completion.create(model="fake-chat", prompt="hi", api_key="sk-another-key-000000000000")
    assert len(fake_models.requests) == 2


def test_missing_openai_key_is_a_clear_error(monkeypatch, cache_dir):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Completion.create(model="gpt-4o-mini", prompt="hi")


def test_fanned_out_choices_are_cached_one_by_one_and_reused(fake_models):
    config = dict(model="fake-ignores-n", prompt="What is 2 + 2?", max_tokens=4, temperature=1.0)
    three = Completion.create(n=3, **config)
    two = Completion.create(n=2, **config)
    assert len(fake_models.requests) == 3 and two["choices"] == three["choices"][:2]
    five = Completion.create(n=5, **config)
    assert len(fake_models.requests) == 5 and five["choices"][:3] == three["choices"]


def test_azure_deployments_are_reached_through_the_azure_client(fake, session, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-0000")
    root = fake.base_url.removesuffix("/v1")
    session.catalog.add({"name": "azure-test", "provider": "azure", "base_url": root,
                                   "api_version": "2024-10-21", "deployment": "my-deployment",
                                   "price_per_1k": {"prompt": 0.001, "completion": 0.002}})
    r = Completion.create(model="azure-test", prompt="What is 20 + 22?")
    assert Completion.extract_text(r) == ["42"]
    request = fake.requests[0]
    assert request["path"] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert {k.lower(): v for k, v in request["headers"].items()}["api-key"] == "azure-key-0000"


def test_azure_without_an_endpoint_is_a_clear_error(cache_dir, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-0000")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        Completion.create(model="azure-gpt-4o-mini", prompt="hi")


def test_literal_braces_without_a_context_are_sent_as_they_are(fake_models):
    Completion.create(model="fake-chat", prompt='Reply with JSON like {"a": 1}')
    assert fake_models.completions()[0]["messages"][0]["content"] == 'Reply with JSON like {"a": 1}'


def test_a_retry_after_longer_than_the_retry_period_fails_at_once(fake_models):
    fake_models.fail_next({"status": 429, "headers": {"Retry-After": "300"}})
    start = time.monotonic()
    with pytest.raises(ProviderError, match="HTTP 429"):
        Completion.create(model="fake-chat", prompt="hi", max_retry_period=1)
    assert len(fake_models.requests) == 1  # not retried
    # a generous bound, only to say it did not hang: waiting out the Retry-After would take 300 s
    assert time.monotonic() - start < 120
