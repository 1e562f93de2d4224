"""Requests in flight per endpoint: the AIMD limit (engine/requests/providers/limiter.py) grows while answers come
back healthy, shrinks on 429s, stays within its model's floor and ceiling, and an explicit concurrency pins it;
over HTTP with the real openai client against the loopback fake server, rate-limited or slow, counted there."""
import asyncio
import json
import logging
import sys
import urllib.request
from pathlib import Path

import pytest
from flaml.tune import randint

from engine import Completion, ConfigError
from engine.core.config import to_run_config
from engine.core.models import ModelCatalog, ModelSpec
from engine.evaluate.evaluator import Evaluator
from engine.requests.cache import CacheRoot
from engine.requests.providers import ProviderClient
from engine.requests.providers.embedded import EmbeddedServer
from engine.requests.providers.limiter import CONGESTED, NEUTRAL, OK, REFUSED, AdaptiveLimit, Limits
from engine.requests.requester import Requester
from engine.tuning import TuneSpec
from tests.support.helpers import PRICE, PROMPTS, composed, eval_func

FAKE = str(Path(__file__).with_name("support") / "fake_openai.py")


def sums(count: int) -> list[dict]:
    """`count` distinct arithmetic points."""
    return [{"question": f"What is {i} + {i + 1}?", "answer": 2 * i + 1} for i in range(count)]


CONFIG = {"model": "fake-chat", "prompt": "{question}", "max_tokens": 8}


# --- the limit itself ------------------------------------------------------------------------------------------

def test_the_limit_grows_while_in_use_is_cut_once_per_burst_and_stays_within_its_bounds():
    async def scenario():
        limit = AdaptiveLimit(Limits(floor=2, ceiling=20, start=8))
        tickets = [await limit.acquire() for _ in range(8)]
        assert limit.in_flight == 8
        for ticket in tickets:
            limit.release(ticket, OK, 0.1, "s")
        grown = limit.limit
        assert grown > 8  # healthy answers while at least half of it was in use
        burst = [await limit.acquire() for _ in range(int(grown))]
        for ticket in burst:  # a burst of 429s sent under the same limit: one cut
            limit.release(ticket, CONGESTED)
        assert limit.limit == pytest.approx(grown * 0.8) and limit.cuts == 1
        before, burst = limit.limit, [await limit.acquire() for _ in range(4)]
        for ticket in burst:  # 429s: the first cuts, each further one of its burst takes a slot off
            limit.release(ticket, REFUSED)
        assert limit.limit == pytest.approx(before * 0.8 - 3) and limit.cuts == 2
        for _ in range(200):  # congestion after congestion, each on an attempt sent after the last cut
            limit.release(await limit.acquire(), CONGESTED)
        assert limit.allowed == 2  # the floor
        for _ in range(2000):
            tickets = [await limit.acquire() for _ in range(limit.allowed)]
            for ticket in tickets:
                limit.release(ticket, OK, 0.1, "s")
        assert limit.allowed == 20  # the ceiling
        limit.release(await limit.acquire(), OK, 0.1 * 3.5, "s")  # far slower than its size's fastest
        assert limit.allowed < 20
        limit.release(await limit.acquire(), NEUTRAL)  # e.g. a 400: says nothing of the load

    asyncio.run(scenario())


def test_a_request_beyond_the_limit_waits_for_a_slot_and_a_pinned_limit_ignores_signals():
    async def scenario():
        limit = AdaptiveLimit(Limits(1, 2, 2))
        first, second = await limit.acquire(), await limit.acquire()
        third = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)  # let it run up to its wait
        assert not third.done() and limit.in_flight == 2
        limit.release(first, OK, 0.1, "s")
        await third
        assert limit.in_flight == 2
        cancelled = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        limit.release(second, NEUTRAL)
        assert limit.in_flight == 1  # the cancelled waiter took no slot
        pinned = AdaptiveLimit(Limits(3, 3, 3), fixed=True)
        for signal in (CONGESTED, OK, CONGESTED):
            pinned.release(await pinned.acquire(), signal, 9.0, "s")
        assert pinned.allowed == 3

    asyncio.run(scenario())


# --- over HTTP ---------------------------------------------------------------------------------------------------

def test_on_a_rate_limited_server_the_engine_converges_near_the_limit_with_few_429s(fake_models):
    fake_models.max_in_flight, fake_models.latency, fake_models.retry_after = 6, 0.1, 0.05
    data = sums(240)
    result = Completion.test(data, CONFIG, eval_func)  # concurrency auto: the model's ceiling is 64
    assert result["success"] == 1.0
    requests = fake_models.requests
    answered = [r for r in requests if r["answered"]]
    assert len(answered) == len(data) and fake_models.paid_twice() == 0  # nothing paid twice
    assert fake_models.most_in_flight == 6  # it reached the limit
    after_warm_up = requests[len(requests) // 10:]
    refused = sum(r.get("status") == 429 for r in after_warm_up)
    assert refused <= 0.05 * len(after_warm_up), f"{refused} of {len(after_warm_up)} answered 429"
    level = [r["in_flight"] for r in after_warm_up if r["answered"]]
    assert sum(level) / len(level) >= 4.5  # near the limit of 6, not collapsed to the floor


def test_a_tune_on_a_rate_limited_server_keeps_its_budget_server_side(landscape):
    landscape.max_in_flight, landscape.latency, landscape.retry_after = 4, 0.01, 0.05
    budget = 0.004
    best, _ = Completion.tune(sums(12), "success", "max", eval_func, optimization_budget=budget, num_samples=-1,
                              logging_level=logging.ERROR, model="fake-chat", prompt=PROMPTS,
                              max_tokens=randint(4, 60))
    assert best
    assert 0 < landscape.billed(PRICE["prompt"], PRICE["completion"]) <= budget
    assert landscape.paid_twice() == 0 and landscape.rate_limited > 0  # the limit was met, and held
    assert landscape.most_in_flight == 4


def test_on_a_healthy_slow_server_the_limit_grows_past_the_old_fixed_8(fake_models):
    fake_models.latency = 0.3  # an answer takes longer than the client needs to send the next ones
    Completion.test(sums(200), CONFIG, eval_func)
    assert fake_models.most_in_flight > 16 and fake_models.rate_limited == 0


def test_a_default_tune_on_a_healthy_slow_server_fills_more_than_8_slots(landscape):
    landscape.latency = 0.05
    Completion.tune(sums(60), "success", "max", eval_func, optimization_budget=0.05, num_samples=24,
                    logging_level=logging.ERROR, model="fake-chat", prompt=PROMPTS, max_tokens=randint(4, 16))
    assert landscape.most_in_flight > 8


def test_an_explicit_concurrency_pins_requests_in_flight_fan_out_included(fake_models):
    fake_models.latency = 0.02
    Completion.test(sums(60), CONFIG, eval_func, concurrency=3)
    assert fake_models.most_in_flight == 3
    fake_models.most_in_flight = 0
    # a provider that ignores n: each point is 3 requests; the pin counts requests, not points
    Completion.test(sums(30), {**CONFIG, "model": "fake-ignores-n", "n": 3}, eval_func, concurrency=2)
    assert fake_models.most_in_flight == 2


def test_the_embedded_models_ceiling_stays_low(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_RUNTIME_DIR", str(tmp_path / "run"))
    catalog = ModelCatalog()  # conf/model/smollm2.yaml: concurrency.ceiling 2
    assert catalog.get("smollm2").concurrency_limits()[1] == 2
    server = EmbeddedServer("smollm2", 2048, command=lambda port: [sys.executable, FAKE, "--port", str(port),
                                                                    "--latency", "0.05"])
    providers = ProviderClient(embedded=server)
    try:
        requester = Requester(catalog, CacheRoot(str(tmp_path / "cache")), providers)
        run = Evaluator(requester, 41, progress=False).run({"model": "smollm2", "prompt": "{question}",
                                                            "max_tokens": 4, "n": 2}, sums(16))
        assert all(o is not None for o in run.outcomes)
        with urllib.request.urlopen(f"{server.base_url()}/stats", timeout=10) as answer:
            stats = json.loads(answer.read())
        assert stats["answered"] == 32 and stats["most_in_flight"] == 2
    finally:
        providers.close()


# --- configuration ----------------------------------------------------------------------------------------------

def test_concurrency_is_auto_by_default_a_number_pins_it_and_bad_values_are_refused():
    assert to_run_config(composed()).parallel.concurrency == "auto"
    assert to_run_config(composed("parallel.concurrency=16")).parallel.concurrency == 16
    assert to_run_config(composed("parallel.concurrency=null")).parallel.concurrency is None
    for bad in ("0", "lots", "true"):
        with pytest.raises(ConfigError, match="parallel.concurrency"):
            to_run_config(composed(f"parallel.concurrency={bad}"))
    auto = TuneSpec(sums(2), "success", "max", eval_func)
    assert not auto.pinned and auto.concurrency is None and auto.trials is None
    auto.resolve(64)
    assert (auto.concurrency, auto.trials) == (64, 32)
    pinned = TuneSpec(sums(2), "success", "max", eval_func, concurrency=16)
    assert pinned.pinned and (pinned.concurrency, pinned.trials) == (16, 8)
    with pytest.raises(ConfigError, match="floor <= start <= ceiling"):
        ModelSpec(name="m", concurrency={"floor": 4, "ceiling": 2})
    with pytest.raises(ConfigError, match="concurrency takes"):
        ModelSpec(name="m", concurrency={"max": 4})
    assert ModelSpec(name="m", provider="embedded").concurrency_limits() == (1, 2, 2)
    assert ModelSpec(name="m", concurrency={"ceiling": 4}).concurrency_limits() == (1, 4, 4)
