"""Cache-hit latency of `Completion.create` beside a raw LMDB get, and overhead over a raw openai call."""
from __future__ import annotations

import tempfile
import time

import openai
import orjson

from engine import Completion
from engine.core.digests import request_digest
from engine.session import Session

from .common import FakeOpenAI, fake_server_process, interleaved_us, per_call_us, register_fake_model


def cache_hit_latency(calls: int = 20000) -> dict:
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp, Session(cache_path=tmp) as session:
        model = register_fake_model(session.catalog, server.base_url)
        config = dict(model=model, prompt="What is {a} + {b}?", max_tokens=16, temperature=0.7, stop=["\n"])
        context = {"a": 3, "b": 4}
        Completion.create(context=context, **config)  # the one miss
        hit_us = per_call_us(lambda: Completion.create(context=context, **config), calls)
        request = session.requester
        from engine.requests.requester import prepare
        prepared = prepare(config, context, session.catalog, 41)[0]
        env = request.caches.for_seed(41)._env

        def raw_get():
            with env.begin() as txn:
                txn.get(prepared.key)

        def minimal():
            key = request_digest({"payload": prepared.payload})
            with env.begin() as txn:
                raw = txn.get(prepared.key)
            orjson.loads(raw)
            return key

        raw_us = per_call_us(raw_get, calls)
        minimal_us = per_call_us(minimal, calls)
        return {"create_hit_us": hit_us, "raw_lmdb_get_us": raw_us, "digest_get_decode_us": minimal_us,
                "requests_sent": len(server.requests)}


def overhead_over_raw_openai(calls: int = 300) -> dict:
    with fake_server_process() as base_url, tempfile.TemporaryDirectory() as tmp, Session(cache_path=tmp) as session:
        model = register_fake_model(session.catalog, base_url)
        client = openai.OpenAI(base_url=base_url, api_key="no-key", max_retries=0)
        params = dict(max_tokens=16, temperature=0.7)

        def raw():
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 3 + 4?"}],
                                           **params).model_dump(mode="json")

        def engine():
            Completion.create(context={"a": 3}, model=model, prompt="What is {a} + 4?", use_cache=False, **params)

        raw(), engine()  # warm both connection pools
        raw_us, engine_us = interleaved_us(raw, engine, calls)
        raw_cpu, engine_cpu = interleaved_us(raw, engine, calls // 2, batch=50, clock=time.process_time)
        return {"raw_openai_us": raw_us, "engine_no_cache_us": engine_us,
                "overhead_pct": (engine_us / raw_us - 1) * 100,
                "raw_cpu_us": raw_cpu, "engine_cpu_us": engine_cpu}
