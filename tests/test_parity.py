"""Code written for pyautogen 0.1.x (`autogen.oai.Completion`) runs with only its import changed.

Every test is written as a 0.1.x user writes the calls (an OAI_CONFIG_LIST file, `filter_func`, `logged_history`,
both `test` spellings ...), against the loopback fake server through the real openai client and the real LMDB
cache; one runs on the embedded model. One test per row of issue 12's table.
"""
import json
import logging

import pytest

import engine as autogen  # the one line a 0.1.x user changes: `import autogen`
from engine import BudgetError, ConfigError, ProviderError
from engine import ChatCompletion, Completion
from tests.support.helpers import PRICE, eval_func, top, trial_of

SECRET = "sk-parity-SECRET-0123456789abcdef"
DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a, b in [(1, 2), (3, 4), (5, 6)]]


def headers_of(request: dict) -> dict:
    return {k.lower(): v for k, v in request["headers"].items()}


# ---- row 1: the endpoint-list helpers ---------------------------------------------------------------------
def test_config_list_from_json_file_and_env_filtered_then_used_by_create(fake, session, tmp_path, monkeypatch):
    entries = [{"model": "gpt-4", "api_key": SECRET, "api_base": fake.base_url, "api_type": "open_ai"},
               {"model": "gpt-3.5-turbo", "api_key": "sk-other-0000000000000000", "api_base": fake.base_url}]
    (tmp_path / "OAI_CONFIG_LIST").write_text(json.dumps(entries))
    monkeypatch.delenv("OAI_CONFIG_LIST", raising=False)
    config_list = autogen.config_list_from_json("OAI_CONFIG_LIST", file_location=str(tmp_path),
                                                filter_dict={"model": ["gpt-4"]})
    assert config_list == entries[:1]
    monkeypatch.setenv("OAI_CONFIG_LIST", json.dumps(entries))  # the env variable wins over the file
    assert len(autogen.config_list_from_json("OAI_CONFIG_LIST")) == 2
    assert autogen.config_list_from_json("NO_SUCH_LIST", file_location=str(tmp_path)) == []

    r = autogen.Completion.create(config_list=config_list, prompt="What is 2 + 5?")
    assert autogen.Completion.extract_text(r) == ["7"]
    assert headers_of(fake.requests[0])["authorization"] == f"Bearer {SECRET}"
    assert fake.completions()[0]["model"] == "gpt-4"
    cache_files = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert SECRET.encode() not in cache_files


def test_dotenv_key_files_and_builders_as_0_1(tmp_path, monkeypatch):
    for var in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_BASE", "MY_KEY"):
        monkeypatch.delenv(var, raising=False)
    env = tmp_path / ".env"
    env.write_text(f"OPENAI_API_KEY={SECRET}\nMY_KEY=sk-mine-111111111111\n")
    got = autogen.config_list_from_dotenv(str(env), model_api_key_map={
        "llama-7B": {"api_key_env_var": "MY_KEY", "api_base": "http://127.0.0.1:9/v1", "api_type": "open_ai"},
        "no-key-model": "UNSET_VARIABLE"})
    assert sorted(c["model"] for c in got) == ["gpt-3.5-turbo", "gpt-4", "llama-7B"]
    assert [c for c in got if c["model"] == "llama-7B"][0] == {
        "api_key": "sk-mine-111111111111", "api_base": "http://127.0.0.1:9/v1", "api_type": "open_ai",
        "model": "llama-7B"}
    assert "OPENAI_API_KEY" not in __import__("os").environ  # read, never loaded into the environment
    assert autogen.config_list_from_dotenv(str(env), filter_dict={"model": {"gpt-4"}})[0]["api_key"] == SECRET

    (tmp_path / "key_openai.txt").write_text("sk-a\nsk-b\n")
    (tmp_path / "key_aoai.txt").write_text("az-1")
    (tmp_path / "base_aoai.txt").write_text("https://x.openai.azure.com")
    both = autogen.config_list_openai_aoai(str(tmp_path))
    assert both == [{"api_key": "sk-a"}, {"api_key": "sk-b"},
                    {"api_key": "az-1", "api_base": "https://x.openai.azure.com", "api_type": "azure",
                     "api_version": "2023-07-01-preview"}]
    assert autogen.config_list_openai_aoai(str(tmp_path), exclude="openai") == both[2:]
    models = autogen.config_list_from_models(str(tmp_path), exclude="aoai", model_list=["gpt-4", "gpt-3.5-turbo"])
    assert [(c["model"], c["api_key"]) for c in models] == [("gpt-4", "sk-a"), ("gpt-4", "sk-b"),
                                                            ("gpt-3.5-turbo", "sk-a"), ("gpt-3.5-turbo", "sk-b")]
    assert autogen.get_config_list(["k1", " ", "k2"], ["b1", "b2", "b3"], "azure", "v") == [
        {"api_key": "k1", "api_base": "b1", "api_type": "azure", "api_version": "v"},
        {"api_key": "k2", "api_base": "b3", "api_type": "azure", "api_version": "v"}]
    assert autogen.get_config("k", api_type="azure") == {"api_key": "k", "api_type": "azure"}
    assert autogen.filter_config(both, {"api_type": ["azure"]}) == both[2:]
    assert autogen.filter_config(both, {"api_type": [None]}) == both[:2]  # None: the key may be missing


# ---- row 2: any model name, through its entry, priced from the maintained table ---------------------------
def test_hosted_model_names_are_served_by_their_entry_and_priced_by_genai_prices(fake, session):
    r = Completion.create(config_list=[{"model": "gpt-4", "api_key": SECRET, "api_base": fake.base_url}],
                          prompt="one two three")
    usage = r["usage"]
    assert r["cost"] == pytest.approx((usage["prompt_tokens"] * 0.03 + usage["completion_tokens"] * 0.06) / 1000)
    assert Completion.cost("gpt-4", r) == pytest.approx(r["cost"])

    azure = {"model": "gpt-35-turbo", "api_key": "az-key-1", "api_type": "azure", "api_base": fake.base_url,
             "api_version": "2023-07-01-preview"}
    r = ChatCompletion.create(config_list=[azure], messages=[{"role": "user", "content": "What is 4 + 4?"}])
    assert ChatCompletion.extract_text(r) == ["8"]
    sent = fake.requests[-1]
    assert "/openai/deployments/gpt-35-turbo/chat/completions" in sent["path"]
    assert headers_of(sent)["api-key"] == "az-key-1"
    assert r["cost"] == pytest.approx((r["usage"]["prompt_tokens"] * 0.0005
                                       + r["usage"]["completion_tokens"] * 0.0015) / 1000)


def test_a_conf_model_file_wins_over_the_table(fake, session):
    session.catalog.add({"name": "gpt-4", "provider": "compatible", "base_url": fake.base_url, "price_per_1k": PRICE})
    r = Completion.create(model="gpt-4", prompt="a b c d")
    assert r["cost"] == pytest.approx((r["usage"]["prompt_tokens"] * PRICE["prompt"]
                                       + r["usage"]["completion_tokens"] * PRICE["completion"]) / 1000)


def test_an_unpriced_local_model_works_in_create_costs_0_with_a_warning_and_is_refused_by_a_budget(
        fake, session, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-FROM-THE-ENVIRONMENT")
    local = [{"model": "llama-7B", "api_base": fake.base_url, "api_type": "open_ai"}]
    with caplog.at_level(logging.WARNING, logger="engine"):
        r = Completion.create(config_list=local, prompt="What is 1 + 1?")
    assert Completion.extract_text(r) == ["2"] and r["cost"] == 0
    assert "llama-7B" in caplog.text and "no known price" in caplog.text
    # no OpenAI key from the environment is sent to someone else's server
    assert "FROM-THE-ENVIRONMENT" not in json.dumps(fake.requests[0]["headers"])
    sent = len(fake.requests)
    with pytest.raises(BudgetError, match="llama-7B.*no known price"):
        Completion.tune(DATA, "success", "max", eval_func, inference_budget=0.01, optimization_budget=0.1,
                        num_samples=2, model="llama-7B", prompt="{question}", config_list=local)
    assert len(fake.requests) == sent  # refused before any spend
    with pytest.raises(autogen.UnknownModelError, match="never-heard-of"):  # no entry, no price: still refused
        Completion.create(model="never-heard-of", prompt="x")


def test_api_base_in_an_embedded_model_entry_is_honoured(fake, session):
    r = Completion.create(config_list=[{"model": "smollm2", "api_base": fake.base_url}], prompt="What is 3 + 3?")
    assert Completion.extract_text(r)[0].split()[0] == "6"  # the fake answered: not the embedded server
    assert len(fake.completions()) == 1


# ---- row 3: both spellings of test, cost, set_cache; clear_cache -------------------------------------------
def test_test_in_both_spellings_gives_the_same_result(fake_models):
    config = {"model": "fake-chat", "prompt": "{question}", "max_tokens": 4}
    seed_style = Completion.test(DATA, config, eval_func)
    old_style = Completion.test(DATA, eval_func, **config)
    old_keyword = Completion.test(DATA, eval_func=eval_func, config_list=[{"model": "fake-chat"}],
                                  prompt="{question}", max_tokens=4)
    assert seed_style["success"] == 1.0 and seed_style["cost"] > 0
    for other in (old_style, old_keyword):
        assert other["success"] == seed_style["success"] and other["cost"] == pytest.approx(seed_style["cost"])
        assert other["inference_cost"] == pytest.approx(seed_style["cost"] / len(DATA))


def test_cost_in_both_spellings(fake_models):
    r = Completion.create(model="fake-chat", prompt="one two three four")
    expected = (r["usage"]["prompt_tokens"] * PRICE["prompt"] + r["usage"]["completion_tokens"] * PRICE["completion"]) / 1000
    assert Completion.cost(r) == pytest.approx(expected)  # 0.1.x
    assert Completion.cost("fake-chat", r) == pytest.approx(expected)  # the seed's docs
    plain = {k: v for k, v in r.items() if k != "cost"}
    assert Completion.cost(plain) == pytest.approx(expected)  # priced by its `model` field


def test_set_cache_with_cache_path_root_and_clear_cache(fake_models, tmp_path):
    root = tmp_path / "oldcache"
    Completion.set_cache(7, cache_path_root=str(root))
    assert Completion.seed == 7 and Completion.cache_path == f"{root}/7"
    config = dict(model="fake-chat", prompt="What is 2 + 2?")
    Completion.create(**config)
    Completion.create(**config)
    assert len(fake_models.requests) == 1 and (root / "7" / "data.mdb").is_file()
    Completion.clear_cache(seed=7, cache_path_root=str(root))
    Completion.create(**config)
    assert len(fake_models.requests) == 2
    Completion.set_cache(8, str(root))  # the seed's spelling: the root positionally
    Completion.create(**config)
    assert len(fake_models.requests) == 3
    Completion.clear_cache(cache_path_root=str(root))  # seed=None: every seed under the root
    Completion.create(**config)
    Completion.set_cache(7, cache_path_root=str(root))
    Completion.create(**config)
    assert len(fake_models.requests) == 5


# ---- row 4: create's control arguments, fail-over, the response object ---------------------------------------
def test_filter_func_moves_on_and_the_response_says_which_config(fake_models):
    def valid_json_filter(context, base_config, response):  # the 0.1.x docs' pattern
        assert "config_list" not in base_config and base_config["prompt"] == "What is {a} + 1?"
        return context["want"] in Completion.extract_text(response)[0]

    config_list = [{"model": "fake-text"}, {"model": "fake-chat"}]
    r = Completion.create(context={"a": 1, "want": "2"}, config_list=config_list, filter_func=valid_json_filter,
                          prompt="What is {a} + 1?")
    assert r["config_id"] == 0 and r["pass_filter"] is True and r.config_id == 0
    r = Completion.create(context={"a": 1, "want": "nothing"}, config_list=config_list,
                          filter_func=valid_json_filter, prompt="What is {a} + 1?")
    assert r["config_id"] == 1 and r["pass_filter"] is False  # every config failed: the last response
    assert r.choices[0].message.content == "2" and r["choices"][0]["message"]["content"] == "2"
    costs = [(u["prompt_tokens"] * PRICE["prompt"] + u["completion_tokens"] * PRICE["completion"]) / 1000
             for u in (fake_models.requests[0]["usage"], fake_models.requests[1]["usage"])]
    assert r["cost"] == pytest.approx(sum(costs))  # both answers it took (cached, still counted as 0.1.x)
    for body in fake_models.completions():
        assert not {"filter_func", "config_list", "allow_format_str_template"} & body.keys()


def test_control_arguments_are_never_sent_and_ratelimit_returns_minus_1_when_asked(fake_models):
    r = Completion.create(model="fake-text", prompt="x {a}", context={"a": 5}, allow_format_str_template=True,
                          raise_on_ratelimit_or_timeout=True, retry_wait_time=1)
    assert r.choices[0].text == "echo x 5" and r["cost"] > 0 and "config_id" not in r
    assert not {"allow_format_str_template", "raise_on_ratelimit_or_timeout", "retry_wait_time"} & \
        fake_models.completions()[0].keys()
    fake_models.fault_rule = lambda i: {"status": 429}
    fast = dict(model="fake-chat", prompt="hi", max_retry_period=0.5, retry_wait_time=0.1)
    assert Completion.create(raise_on_ratelimit_or_timeout=False, **fast) == -1
    with pytest.raises(ProviderError, match="429"):
        Completion.create(**fast)  # the default raises


def test_config_list_entries_before_the_last_fail_over_at_once(fake_models):
    fake_models.fail_next({"status": 429, "headers": {"Retry-After": "30"}})
    r = Completion.create(config_list=[{"model": "fake-chat"}, {"model": "fake-text"}], prompt="What is 6 + 1?")
    # 0.1.x: at once, to the next entry (the default retry period, 120 s, would take the Retry-After and ask
    # fake-chat again): the server saw the next entry's request before the Retry-After had passed
    assert r["config_id"] == 1 and r["pass_filter"] is None and r.choices[0].text == "7"
    assert len(fake_models.requests) == 2
    refused, next_entry = fake_models.requests
    assert refused["path"] == "/v1/chat/completions" and next_entry["path"] == "/v1/completions"
    assert next_entry["time"] - refused["time"] < 30
    fake_models.fail_next({"status": 429}, {"status": 429})  # the last entry retries
    r = Completion.create(config_list=[{"model": "fake-chat", "api_key": SECRET}], prompt="What is 6 + 2?",
                          retry_wait_time=0.1)
    assert Completion.extract_text(r) == ["8"] and len(fake_models.requests) == 5


# ---- row 5: book-keeping -------------------------------------------------------------------------------------
def test_logging_compact_and_full_with_usage_summary(fake_models, capsys):
    Completion.start_logging()
    turn1 = [{"role": "user", "content": "What is 1 + 1?"}]
    r1 = ChatCompletion.create(model="fake-chat", messages=turn1)
    turn2 = turn1 + [r1["choices"][0]["message"], {"role": "user", "content": "What is 2 + 2?"}]
    r2 = ChatCompletion.create(model="fake-chat", messages=turn2)
    history = Completion.logged_history
    assert len(history) == 1  # one conversation, two calls
    (entry,) = history.values()
    assert entry["created_at"] == [0, 1] and entry["cost"] == pytest.approx([r1["cost"], r2["cost"]])
    assert entry["token_count"][1]["total_tokens"] == r2["usage"]["total_tokens"]
    Completion.print_usage_summary()
    out = capsys.readouterr().out
    assert f"Total cost: {r1['cost'] + r2['cost']}" in out
    total = r1["usage"]["prompt_tokens"] + r2["usage"]["prompt_tokens"]
    assert f"Token count summary for model fake-chat: prompt_tokens: {total}," in out

    mine = {}
    Completion.start_logging(mine, compact=False)
    Completion.create(config_list=[{"model": "fake-chat", "api_key": SECRET}], prompt="What is 5 + 5?")
    assert list(mine) == [0] and mine[0]["request"]["messages"][0]["content"] == "What is 5 + 5?"
    assert mine[0]["response"]["choices"][0]["message"]["content"] == "10"
    assert "SECRET" not in repr(mine)
    Completion.stop_logging()
    assert Completion.logged_history is None
    Completion.create(model="fake-chat", prompt="not logged")
    assert len(mine) == 1


# ---- row 6: helpers; functions passed through; get_key without credentials; old class attributes -----------
def test_functions_pass_through_and_helpers_behave_as_0_1(fake_models):
    functions = [{"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}]
    ChatCompletion.create(model="fake-chat", messages=[{"role": "user", "content": "hi"}], functions=functions)
    assert fake_models.completions()[0]["functions"] == functions
    call = {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": "{\"a\": 1}"}}
    response = {"choices": [{"message": call}, {"message": {"role": "assistant", "content": "plain"}}]}
    assert Completion.extract_text_or_function_call(response) == [call, "plain"]
    assert Completion.extract_text_or_function_call({"choices": [{"text": "t"}]}) == ["t"]
    assert Completion.instantiate("What is {a}?", {"a": 3}) == "What is 3?"
    assert Completion.instantiate(lambda ctx: f"<{ctx['a']}>", {"a": 3}) == "<3>"
    assert Completion.instantiate("{a}", None) == "{a}"


def test_get_key_never_includes_credentials_and_old_class_attributes_are_not_ignored(session):
    with_key = {"model": "gpt-4", "api_key": SECRET, "api_base": "http://x", "temperature": 0,
                "config_list": [{"model": "gpt-4", "api_key": SECRET}]}
    key = Completion.get_key(with_key)
    assert "SECRET" not in repr(key)
    assert key == autogen.get_key({"model": "gpt-4", "temperature": 0, "config_list": [{"model": "gpt-4"}]})
    assert key != autogen.get_key({"model": "gpt-4", "temperature": 1, "config_list": [{"model": "gpt-4"}]})
    Completion.request_timeout = 30
    assert session.requests.timeout == 30
    Completion.retry_wait_time = 2
    assert Completion.retry_wait_time == 2
    with pytest.raises(ConfigError, match="conf/model"):
        Completion.price1K = {"gpt-4": 0.03}
    with pytest.raises(ConfigError, match="conf/model"):
        Completion.price1K["gpt-4"]


# ---- the embedded model, through a config list ---------------------------------------------------------------
@pytest.mark.embedded
def test_smollm2_through_a_config_list(session):
    config_list = [{"model": "smollm2"}]
    r = Completion.create(config_list=config_list, prompt="What is the capital of France? Answer in one word.",
                          max_tokens=6, temperature=0)
    assert "Paris" in r.choices[0].message.content and r["config_id"] == 0
    assert 0 < r["cost"] < 1e-4


# ---- row 7: one search over several models ---------------------------------------------------------------
def test_a_config_list_of_several_models_is_one_search_seeded_with_each_model(fake, session, tmp_path):
    from tests.support.fake_openai import landscape_responder
    fake.responder = landscape_responder
    log = tmp_path / "trials.jsonl"
    config_list = [{"model": "gpt-4", "api_key": SECRET, "api_base": fake.base_url},
                   {"model": "gpt-3.5-turbo", "api_key": SECRET, "api_base": fake.base_url}]
    best, _ = Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.5, num_samples=4,
                              log_file_name=str(log), config_list=config_list, prompt="{question}", max_tokens=8)
    trials = [json.loads(line) for line in log.read_text().splitlines()]
    first, second = trials[0]["config"], trials[1]["config"]
    assert {first["model"], second["model"]} == {"gpt-4", "gpt-3.5-turbo"}  # each model once, first
    same = {k: v for k, v in first.items() if k not in ("model", "config_list")}
    assert same == {k: v for k, v in second.items() if k not in ("model", "config_list")}
    for trial in trials[:2]:  # each trial's requests go to its own model's entry, priced by that model
        assert [e["model"] for e in trial["config"]["config_list"]] == [trial["config"]["model"]]
        assert trial["config"]["config_list"][0]["api_key"] == "***"
    price = {"gpt-4": (0.03, 0.06), "gpt-3.5-turbo": (0.0005, 0.0015)}
    for trial in trials[:2]:
        p, c = price[trial["config"]["model"]]
        assert trial["cost_usd"] == pytest.approx((trial["prompt_tokens"] * p + trial["completion_tokens"] * c) / 1000)
    sent = [b["model"] for b in fake.completions()]
    assert set(sent) == {"gpt-4", "gpt-3.5-turbo"}
    chosen = trial_of(best, trials)  # a config tried in full on its own model's entry, and none did better
    assert chosen is not None and not chosen["pruned"] and chosen["metrics"]["success"] == top(trials)
    assert "SECRET" not in log.read_text()


def test_model_choice_is_searched_starting_with_every_model_on_the_same_settings(fake_models, tmp_path):
    from flaml import tune
    log = tmp_path / "trials.jsonl"
    Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.05, num_samples=3,
                    log_file_name=str(log), model=tune.choice(["fake-chat", "fake-text"]), prompt="{question}")
    first, second = [json.loads(line)["config"] for line in log.read_text().splitlines()[:2]]
    assert {first.pop("model"), second.pop("model")} == {"fake-chat", "fake-text"} and first == second
    assert {r["path"] for r in fake_models.requests} == {"/v1/chat/completions", "/v1/completions"}


def test_the_tuned_config_carries_no_config_list_so_0_1_code_passes_its_own_again(fake, session):
    """0.1.x: `config, _ = tune(..., config_list=cl)` then `create(context=point, config_list=cl, **config)` and
    `test(data, eval_func, config_list=cl, **config)`; the tuned config must not hold the list, nor its keys."""
    cl = [{"model": "gpt-4", "api_key": SECRET, "api_base": fake.base_url}]
    data = [{"question": f"What is {a} + 1?", "answer": a + 1} for a in range(4)]
    config, _ = autogen.Completion.tune(data, "success", "max", eval_func, optimization_budget=0.05, num_samples=2,
                                        config_list=cl, model="gpt-4", prompt="{question}",
                                        logging_level=logging.ERROR)
    assert "config_list" not in config and SECRET not in json.dumps(config, default=str)
    r = autogen.Completion.create(context=data[0], config_list=cl, **config)
    assert autogen.Completion.extract_text(r)
    result = autogen.Completion.test(data, eval_func, config_list=cl, **config)
    assert "success" in result


@pytest.mark.parametrize("model, prompt_1k, completion_1k", [("text-ada-001", 0.0004, 0.0004),
                                                             ("text-davinci-003", 0.02, 0.02),
                                                             ("gpt-4-0314", 0.03, 0.06)])
def test_retired_openai_models_cost_what_0_1_priced_them(fake, session, model, prompt_1k, completion_1k):
    """0.1.x code and old logs name models genai-prices no longer lists under OpenAI: they are still priced."""
    cl = [{"model": model, "api_key": SECRET, "api_base": fake.base_url}]
    r = autogen.Completion.create(config_list=cl, prompt="What is 2 + 5?", max_tokens=4)
    usage = r["usage"]
    expected = (usage["prompt_tokens"] * prompt_1k + usage["completion_tokens"] * completion_1k) / 1000
    assert r["cost"] == pytest.approx(expected) and r["cost"] > 0
    logged = {"model": model, "usage": usage, "choices": r["choices"]}
    assert autogen.Completion.cost(logged) == pytest.approx(expected)  # an old log's response, priced by its model


# ---- issue 22, item 3: tune() without a model searches the config_list's models -----------------------------
@pytest.fixture
def no_local_server(monkeypatch):
    """Any attempt to reach the embedded (smollm2) server fails the test."""
    from engine.requests.providers.client import ProviderClient

    def refuse(self, endpoint):
        raise AssertionError(f"the embedded server was asked to serve {endpoint.model}")

    monkeypatch.setattr(ProviderClient, "embedded", refuse)


def test_tune_without_a_model_searches_the_config_lists_models_each_on_its_own_entries(fake, session,
                                                                                       no_local_server):
    from tests.support.fake_openai import FakeOpenAI
    with FakeOpenAI() as other:
        config_list = [{"model": "gpt-4", "api_key": SECRET, "api_base": fake.base_url},
                       {"model": "gpt-3.5-turbo", "api_key": SECRET, "api_base": other.base_url}]
        config, analysis = autogen.Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.5,
                                                   num_samples=3, config_list=config_list, prompt="{question}",
                                                   max_tokens=8, logging_level=logging.ERROR)
        assert [b["model"] for b in fake.completions()] and {b["model"] for b in fake.completions()} == {"gpt-4"}
        assert {b["model"] for b in other.completions()} == {"gpt-3.5-turbo"}
    assert config["model"] in ("gpt-4", "gpt-3.5-turbo") and "config_list" not in config
    # FLAML's own record of the trials (the analysis tune returns) holds no endpoint, hence no key; one model too
    _, one_model = autogen.Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.5,
                                           num_samples=2, config_list=config_list[:1], prompt="{question}",
                                           max_tokens=8, logging_level=logging.ERROR)
    for found in (analysis, one_model):
        assert SECRET not in repr(found.best_config) + repr([t.config for t in found.trials])


def test_tune_on_a_config_list_naming_no_model_searches_0_1_default_models_never_the_embedded_one(
        fake, session, no_local_server):
    config_list = [{"api_key": SECRET, "api_base": fake.base_url}]  # as config_list_openai_aoai gives them
    config, _ = autogen.ChatCompletion.tune(DATA, "success", "max", eval_func, optimization_budget=0.5,
                                            num_samples=2, config_list=config_list,
                                            messages=[{"role": "user", "content": "{question}"}], max_tokens=8,
                                            logging_level=logging.ERROR)
    assert {b["model"] for b in fake.completions()} == {"gpt-3.5-turbo", "gpt-4"}  # ChatCompletion's two
    assert config["model"] in ("gpt-3.5-turbo", "gpt-4")
    from engine.tuning.space import build_space
    with pytest.raises(ConfigError, match="names no model"):  # the engine's own API says what is missing
        build_space({"config_list": config_list, "prompt": "{question}"})
    # an entry naming no model serves every model searched, after those naming it (as 0.1.x merged the model in)
    mixed = [{"model": "gpt-4", "api_base": "http://a/v1"}, {"api_base": "http://b/v1"},
             {"model": "gpt-3.5-turbo", "api_base": "http://c/v1"}]
    space = build_space({"config_list": mixed, "prompt": "{question}"})
    assert space.models == ["gpt-4", "gpt-3.5-turbo"]
    assert space.endpoints("gpt-4") == mixed[:2] and space.endpoints("gpt-3.5-turbo") == mixed[1:]


# ---- issue 22, item 5: the private helpers 0.1.x's tests call -----------------------------------------------
def test_construct_params_says_what_create_sends(fake, session):
    params = autogen.ChatCompletion._construct_params(context=None, config={"model": "unknown"}, prompt="hi")
    assert params == {"model": "unknown", "messages": [{"role": "user", "content": "hi"}]}
    params = autogen.Completion._construct_params(context=None, config={"model": "text-ada-001"}, prompt="hi")
    assert params == {"model": "text-ada-001", "prompt": "hi"}
    params = autogen.Completion._construct_params(context=None, config={"model": "gpt-4"}, prompt="hi")
    assert "messages" in params and "prompt" not in params
    params = autogen.Completion._construct_params(context={"name": "there"}, config={"model": "text-ada-001"},
                                                  prompt="hi {name}", allow_format_str_template=True)
    assert params["prompt"] == "hi there"
    chat = autogen.ChatCompletion._construct_params(
        {"a": 2}, {"model": "gpt-4", "messages": [{"role": "system", "content": "Sum {a}"}]})
    assert chat["messages"] == [{"role": "system", "content": "Sum 2"}]
    # and create sends exactly that
    for cls, model in ((autogen.Completion, "text-ada-001"), (autogen.Completion, "gpt-4"),
                       (autogen.ChatCompletion, "text-davinci-003")):
        config = {"model": model, "prompt": "What is {a} + 1?", "max_tokens": 4}
        params = cls._construct_params({"a": 5}, config)
        cls.create(context={"a": 5}, config_list=[{"model": model, "api_key": SECRET, "api_base": fake.base_url}],
                   **config)
        body = fake.completions()[-1]
        assert {k: body.get(k) for k in params} == params


def test_eval_after_tune_is_the_full_evaluation_of_a_sampled_config(fake, session):
    cl = [{"model": "gpt-4", "api_key": SECRET, "api_base": fake.base_url}]
    config, analysis = autogen.Completion.tune(DATA, "success", "max", eval_func, optimization_budget=0.1,
                                               num_samples=2, config_list=cl, prompt=["{question}", "Q: {question}"],
                                               max_tokens=8, logging_level=logging.ERROR)
    assert isinstance(analysis.best_config["prompt"], int)  # a sample of the search space, as in 0.1.x
    result = autogen.Completion._eval(analysis.best_config, prune=False, eval_only=True)
    tested = autogen.Completion.test(DATA, config_list=cl, **config)  # the tune's eval_func, as 0.1.x
    assert result["success"] == tested["success"] == 1.0
    assert result["cost"] == pytest.approx(tested["cost"]) and result["cost"] > 0
    autogen.Completion.data = DATA[:1]  # 0.1.x's tests set the points _eval runs on
    sent = len(fake.completions())
    one = autogen.Completion._eval(config, prune=False, eval_only=True)  # a plain config: the tune's entries
    assert one["requests"] == 1 and one["cache_hits"] == 1 and len(fake.completions()) == sent
    assert one["inference_cost"] == pytest.approx(one["cost"])


# ---- issue 22, item 7: tune aggregates its metric as test does ----------------------------------------------
# Right answers score a steady 0.5; wrong ones 1.0, except 0.0 on the risky point: on the mean, being wrong
# wins (0.75 against 0.5), on the worst point being right does (0.5 against 0.0).
RISKY = [dict(p, risky=i == 1) for i, p in enumerate(DATA + [{"question": "What is 7 + 7?", "answer": 14}])]
STEADY, CARELESS = "Think step by step. {question}", "{question}"


def graded(responses, answer, risky, **_):
    right = responses[0].split()[:1] == [str(answer)]
    return {"score": 0.5 if right else (0.0 if risky else 1.0)}


def tune_graded(log, **kwargs):
    kwargs.setdefault("metric", "score")
    return autogen.Completion.tune(RISKY, mode="max", eval_func=graded, optimization_budget=0.1, num_samples=2,
                                   log_file_name=str(log), model="fake-chat", prompt=[STEADY, CARELESS],
                                   temperature=1, max_tokens=2, logging_level=logging.ERROR, **kwargs)


def chosen_trial(config, log):
    from tests.support.helpers import logged_trials
    return trial_of(config, logged_trials(log))


def test_tune_for_the_worst_case_picks_a_config_by_its_worst_point(landscape, tmp_path):
    on_mean, _ = tune_graded(tmp_path / "mean.jsonl")
    on_worst, _ = tune_graded(tmp_path / "min.jsonl", agg_method="min")
    assert on_mean["prompt"] == CARELESS and on_worst["prompt"] == STEADY
    trial = chosen_trial(on_worst, tmp_path / "min.jsonl")
    metrics = trial["metrics"]
    assert metrics["score"] == min(trial["scores"]) == 0.5
    # the interval shown for an extreme starts at the observed one: nothing below it was seen
    assert metrics["score_ci_low"] == 0.5 and metrics["score_ci_high"] >= 0.5
    mean_trial = chosen_trial(on_mean, tmp_path / "mean.jsonl")
    assert mean_trial["metrics"]["score"] == pytest.approx(sum(mean_trial["scores"]) / len(RISKY)) == 0.75


def test_tune_aggregates_with_a_callable_and_with_a_dict_per_metric(landscape, tmp_path):
    worst = lambda values: sorted(values)[0]  # noqa: E731
    by_callable, _ = tune_graded(tmp_path / "callable.jsonl", agg_method=worst)
    assert by_callable["prompt"] == STEADY
    by_dict, _ = tune_graded(tmp_path / "dict.jsonl", metric="worst_score", agg_method={"worst_score": min})
    assert by_dict["prompt"] == STEADY
    trial = chosen_trial(by_dict, tmp_path / "dict.jsonl")
    assert trial["metrics"]["worst_score"] == 0.5 and "worst_score_ci_low" in trial["metrics"]
    with pytest.raises(ConfigError, match="without the tuned metric"):
        tune_graded(tmp_path / "bad.jsonl", agg_method={"other": min})


def test_the_interval_a_tune_reports_is_the_aggregates(landscape, tmp_path):
    import statistics

    from engine.core.stats import aggregation, estimate
    config, _ = tune_graded(tmp_path / "median.jsonl", agg_method="median")
    trial = chosen_trial(config, tmp_path / "median.jsonl")
    scores, metrics = trial["scores"], trial["metrics"]
    assert metrics["score"] == statistics.median(scores)
    median = estimate(scores, aggregation("median", "score"))
    assert (metrics["score_ci_low"], metrics["score_ci_high"], metrics["score_se"]) == (median.low, median.high,
                                                                                      median.se)
    assert median.low <= metrics["score"] <= median.high and median.statistic == "median"
    # the median shrugs off the one risky point: the careless prompt wins, 1.0 against 0.5, and its interval is
    # not the mean's (0.75)
    assert config["prompt"] == CARELESS and metrics["score"] == 1.0
    assert (median.low, median.high) != (estimate(scores).low, estimate(scores).high)
