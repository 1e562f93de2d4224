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
from engine.requests.providers.pacer import Pacer
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


def test_a_429_beyond_what_was_answered_cuts_the_limit_and_one_within_it_engages_the_send_rate():
    async def scenario():
        limit = AdaptiveLimit(Limits(floor=2, ceiling=20, start=12))
        for ticket in [await limit.acquire() for _ in range(4)]:
            limit.release(ticket, OK, 0.1, "s")  # 4 sent at once were answered
        burst = [await limit.acquire() for _ in range(8)]
        limit.release(burst[7], REFUSED, retry_after=0.0)  # the 8th in flight refused: a limit in flight,
        assert limit.cuts == 1 and limit.limit == 7 and not limit.pacer.engaged  # of 7
        limit.release(burst[0], REFUSED, retry_after=0.0)  # the 1st refused too: not the number in flight, a rate
        assert limit.pacer.engaged and limit.pacer.cuts == 1 and limit.cuts == 1
        for ticket in burst[1:7]:
            limit.release(ticket, NEUTRAL)
        paced = [await limit.acquire() for _ in range(3)]  # now spaced by the rate
        assert all(ticket[2] > 0 for ticket in paced)
        limit.release(paced[2], REFUSED, retry_after=0.0)  # within a second of the cut: the server still counts
        assert limit.pacer.cuts == 1 and limit.cuts == 1  # what was sent before it; nothing more is cut
        for ticket in paced[:2]:
            limit.release(ticket, OK, 0.1, "s")

    asyncio.run(scenario())


def test_the_send_rate_is_cut_to_a_share_of_what_was_refused_and_grows_back_along_a_cubic():
    pacer = Pacer()
    assert [pacer.reserve(k * 0.025) for k in range(1, 41)] == [0.0] * 40  # off until a 429: 40 sends in 1 s
    assert pacer.rate(1.0) is None
    assert pacer.refused(1.0)  # refused while sending 40 per second
    refused = pacer.refused_rate
    assert refused == pytest.approx(40 / 0.975) and pacer.rate(1.0) == pytest.approx(0.9 * 40)
    waits = [pacer.reserve(1.0) for _ in range(4)]  # no more than 36 in any second: the first waits until 4 of
    assert waits[0] == pytest.approx(0.125)  # the 40 have aged out of it; then they go 1/rate apart
    assert waits[3] - waits[0] == pytest.approx(3 / 36, rel=0.03)
    back = ((refused - 36) / 0.4) ** (1 / 3)  # seconds to grow back to the refused rate
    assert pacer.rate(1.0 + back / 2) == pytest.approx(refused - 0.4 * (back / 2) ** 3)  # fast while far below
    assert pacer.rate(1.0 + back) == pytest.approx(refused)
    assert pacer.rate(1.0 + back + 1) == pytest.approx(refused + 0.4)  # flat around it
    assert pacer.rate(1.0 + back + 5) == pytest.approx(refused + 50)  # faster past it: the limit may have moved
    assert not pacer.refused(1.5)  # within a second of the cut: of the sends before it, which the server counts
    assert not pacer.refused(1.5, before_cut=True) and pacer.refused_rate == pytest.approx(refused - 1 / 0.975)
    assert pacer.refused(10.0)  # a 429 after a second of sending nothing: the rate refused is what was sent
    assert pacer.rate(10.0) == 0.5  # the least it is ever cut to
    burst = Pacer()
    for k in range(60):  # 60 sent in half a second, then refused
        burst.reserve(0.5 + k / 120)
    burst.refused(1.0)
    assert burst.rate(1.0) == pytest.approx(0.9 * 60)  # counted over the whole second: at most what it sent
    assert burst.reserve(1.0) > 0.5  # and no more than the rate's worth in any second: the burst is waited out


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


def test_on_a_server_limiting_requests_per_second_the_engine_sends_near_that_rate_with_few_429s(fake_models):
    fake_models.max_per_second, fake_models.latency, fake_models.retry_after = 40, 0.1, 0.5
    data = sums(320)
    result = Completion.test(data, CONFIG, eval_func)
    assert result["success"] == 1.0
    stats = fake_models.stats()
    assert stats["answered"] == len(data) and stats["paid_twice"] == 0
    late = [i for i, t in enumerate(stats["arrived_s"]) if t >= 2.0]  # after the slow start and its window
    refused = len(set(late) & set(stats["refused"]))
    assert refused <= 0.05 * len(late), f"{refused} of {len(late)} answered 429 after the first 2 s"
    admitted = [stats["arrived_s"][i] for i in late if i not in set(stats["refused"])]
    rate = (len(admitted) - 1) / (admitted[-1] - admitted[0])
    assert rate >= 0.7 * 40, f"{rate:.1f} requests per second admitted, the server allows 40"


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
