"""A small OpenAI-compatible HTTP server on loopback that misbehaves on purpose (a test fixture only).

It answers /v1/chat/completions and /v1/completions deterministically, records every request it gets
(headers and body) so that tests can count calls and tokens server-side, and plays a script of faults:
HTTP errors with or without Retry-After, dropped connections and stalls longer than the client timeout.

In a process of its own: `python -m tests.support.fake_openai` from the repo root (it prints its base URL);
standard library only, so `python tests/support/fake_openai.py` runs it too (a stand-in for llama.cpp's server).
"""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def count_tokens(text: str) -> int:
    """The fixture's tokenizer: whitespace-separated words (deterministic and easy to recompute)."""
    return len(text.split())


def default_responder(body: dict, choice: int) -> str:
    """Echo the last user text; `1 + 2`-style questions get their sum, the n-th choice gets a suffix."""
    if "messages" in body:
        text = body["messages"][-1]["content"]
    else:
        text = body["prompt"]
    m = re.search(r"(-?\d+)\s*\+\s*(-?\d+)", text)
    answer = str(int(m.group(1)) + int(m.group(2))) if m else f"echo {text}"
    if choice:
        answer += f" #{choice}"
    if body.get("seed") is not None:
        answer += f" seed={body['seed']}"
    return answer


def landscape_responder(body: dict, choice: int) -> str:
    """A tuning landscape: right when asked to think step by step or sampled cold; else right only on
    odd choices. Answers carry 40 filler words, so cost grows with max_tokens up to 41."""
    text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    m = re.search(r"(-?\d+)\s*\+\s*(-?\d+)", text)
    right = int(m.group(1)) + int(m.group(2)) if m else 0
    cold = body.get("temperature", 1.0) is not None and body.get("temperature", 1.0) < 0.5
    good = "step by step" in text or cold or choice % 2 == 1
    return f"{right if good else right + 1} " + " ".join(["because"] * 40)


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a hosted API takes many connections at once; the default backlog of 5 resets them


class FakeOpenAI:
    """Run with `with FakeOpenAI() as server:`; `server.base_url` is the /v1 root."""

    def __init__(self, latency: float = 0.0, ignore_n: bool = False,
                 responder: Callable[[dict, int], str] = default_responder, port: int = 0,
                 models_delay: float = 0.0, die_with: int | None = None, max_in_flight: int | None = None,
                 max_per_second: float | None = None, retry_after: float = 0.2):
        self.latency = latency
        # a rate-limited API: a completion request beyond `max_in_flight` being answered, or beyond
        # `max_per_second` admitted in the last second, is answered 429 with Retry-After `retry_after` seconds
        self.max_in_flight, self.max_per_second, self.retry_after = max_in_flight, max_per_second, retry_after
        self.rate_limited = 0  # requests answered 429 by those limits
        self._admitted: deque[float] = deque()  # when the requests of the last second were admitted
        self.models_delay = models_delay  # seconds before GET /v1/models answers (a busy server)
        self.die_with = die_with  # a signal this process sends itself on a completion request (a crash)
        self.ignore_n = ignore_n
        self.responder = responder
        self.script: deque[dict] = deque()  # faults for the next requests, in order
        self.fault_rule: Callable[[int], dict | None] | None = None  # a fault for request i, once the script is empty
        self.extra_completion_tokens = 0  # reported beyond what was generated (llama.cpp on CJK output does)
        self.usage_override: dict | None = None  # replaces fields of the reported usage (absurd or broken ones)
        self.requests: list[dict] = []  # every request received, faults included
        self.in_flight = 0  # completion requests received and not yet answered (or dropped)
        self.most_in_flight = 0  # the most that were ever being answered at once
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # a client that gave up mid-answer is expected
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail_next(self, *faults: dict) -> None:
        """Queue faults: {"status": 429, "headers": {...}, "message": ...}, {"drop": True}, {"stall": s}."""
        self.script.extend(faults)

    def billed(self, prompt_price_1k: float, completion_price_1k: float) -> float:
        """Dollars for every answered request, recomputed from the usage this server reported."""
        usages = [r["usage"] for r in self.requests if "usage" in r]
        return sum(u.get("prompt_tokens", 0) * prompt_price_1k + u.get("completion_tokens", 0) * completion_price_1k
                   for u in usages) / 1000

    def stats(self) -> dict:
        answered = [r for r in self.requests if "usage" in r]
        return {"requests": len(self.requests), "answered": len(answered), "paid_twice": self.paid_twice(),
                "rate_limited": self.rate_limited, "most_in_flight": self.most_in_flight,
                # when each request came and which were answered 429, in arrival order (seconds after the first)
                "arrived_s": [round(r["time"] - self.requests[0]["time"], 3) for r in self.requests],
                "refused": [i for i, r in enumerate(self.requests) if r.get("status") == 429],
                "prompt_tokens": sum(r["usage"].get("prompt_tokens", 0) for r in answered),
                "completion_tokens": sum(r["usage"].get("completion_tokens", 0) for r in answered)}

    def paid_twice(self) -> int:
        """Answers billed for a request body this server had already answered and billed."""
        bodies = [json.dumps(r["body"], sort_keys=True) for r in self.requests if "usage" in r]
        return len(bodies) - len(set(bodies))

    def wait_idle(self, seconds: float = 60.0) -> bool:
        """Wait until no completion request is being answered (what a client sent has all landed), so that a
        test can then assert that nothing more is sent; whether it went idle within `seconds`."""
        deadline, tick = time.monotonic() + seconds, threading.Event()
        while self.in_flight:
            if time.monotonic() >= deadline:
                return False
            tick.wait(0.01)
        return True

    def completions(self) -> list[dict]:
        """Bodies of the requests that were answered successfully."""
        return [r["body"] for r in self.requests if r["answered"]]

    def _over_limit(self) -> bool:
        """Under the lock: whether a new completion request is beyond the rate limits (counted if so);
        admitted ones are counted in the last second's window."""
        now = time.monotonic()
        while self._admitted and self._admitted[0] <= now - 1.0:
            self._admitted.popleft()
        if (self.max_in_flight is not None and self.in_flight >= self.max_in_flight) or (
                self.max_per_second is not None and len(self._admitted) >= self.max_per_second):
            self.rate_limited += 1
            return True
        if self.max_per_second is not None:
            self._admitted.append(now)
        return False

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, path: str, body: dict) -> dict:
        chat = path.endswith("/chat/completions")
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        prompt_text = " ".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
        choices, completion_tokens = [], 0
        for i in range(n):
            words = self.responder(body, i).split()
            if body.get("max_tokens"):
                words = words[: body["max_tokens"]]
            text = " ".join(words)
            stops = body.get("stop") or []
            for stop in [stops] if isinstance(stops, str) else stops:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            completion_tokens += count_tokens(text)
            if chat:
                choices.append({"index": i, "finish_reason": "stop", "logprobs": None,
                                "message": {"role": "assistant", "content": text}})
            else:
                choices.append({"index": i, "finish_reason": "stop", "logprobs": None, "text": text})
        prompt_tokens = count_tokens(prompt_text)
        completion_tokens += self.extra_completion_tokens * n
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if self.usage_override is not None:
            usage.update(self.usage_override)
            usage = {k: v for k, v in usage.items() if v is not None}
        return {
            "id": f"fake-{len(self.requests)}", "object": "chat.completion" if chat else "text_completion",
            "created": 1700000000, "model": body.get("model"), "choices": choices,
            "usage": usage,
        }

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def setup(self):
                super().setup()  # no Nagle: headers and body leave at once, no 40 ms delayed-ACK stall
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/stats"):  # what this server saw and billed, for benchmarks
                    self._send(200, fake.stats())
                    return
                if fake.models_delay:
                    time.sleep(fake.models_delay)
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                with fake._lock:
                    limited = fake._over_limit()
                    if not limited:
                        fake.in_flight += 1
                        fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                if limited:
                    self._refuse()
                    return
                try:
                    self._post()
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _refuse(self):
                """429 with Retry-After `fake.retry_after`, recorded as a request (unbilled, unanswered)."""
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "time": time.monotonic(), "answered": False, "status": 429})
                self._send(429, {"error": {"message": "rate limit reached", "type": "rate_limit", "code": 429}},
                           {"Retry-After": fake.retry_after})

            def _post(self):
                if fake.die_with is not None:  # to this thread: a process-wide kill lets it answer first
                    signal.pthread_kill(threading.get_ident(), fake.die_with)
                    time.sleep(60)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fault = fake.script.popleft() if fake.script else None
                    if fault is None and fake.fault_rule is not None:
                        fault = fake.fault_rule(len(fake.requests))
                    record = {"path": self.path, "headers": dict(self.headers), "body": body,
                              "time": time.monotonic(), "answered": fault is None,
                              "in_flight": fake.in_flight}  # being answered when it came, itself included
                    fake.requests.append(record)
                if fault and fault.get("drop"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault and fault.get("stall"):  # the client gives up first; the answer is still made and billed
                    time.sleep(fault["stall"])
                    record["answered"] = True
                    fault = None
                if fault and "body" in fault:  # a broken answer with HTTP 200, unbilled unless `bill` says
                    if fault.get("bill"):  # what the server bills for it anyway: usage from the request body
                        record["usage"] = fault["bill"](body)
                    data = fault["body"]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if fault:
                    status = fault.get("status", 500)
                    message = fault.get("message", f"scripted failure {status}")
                    self._send(status, {"error": {"message": message, "type": "fake", "code": status}},
                               fault.get("headers"))
                    return
                if fake.latency:
                    time.sleep(fake.latency)
                answer = fake._answer(self.path.split("?")[0], body)
                record["usage"] = answer["usage"]
                self._send(200, answer)

        return Handler


def main() -> None:
    """Serve from its own process (benchmarks do, so that the server never competes for our GIL)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--ignore-n", action="store_true")
    parser.add_argument("--landscape", action="store_true", help="answer with landscape_responder")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--models-delay", type=float, default=0.0, help="seconds before /v1/models answers")
    parser.add_argument("--die-with", help="a signal name (e.g. SIGILL) to die by on the first completion")
    parser.add_argument("--max-in-flight", type=int, help="answer 429 beyond this many requests being answered")
    parser.add_argument("--max-per-second", type=float, help="answer 429 beyond this many requests per second")
    parser.add_argument("--retry-after", type=float, default=0.2, help="the Retry-After of those 429s (seconds)")
    args, _ = parser.parse_known_args()  # a stand-in for llama_cpp.server ignores that server's options
    responder = landscape_responder if args.landscape else default_responder
    die_with = signal.Signals[args.die_with] if args.die_with else None
    with FakeOpenAI(latency=args.latency, ignore_n=args.ignore_n, responder=responder, port=args.port,
                    models_delay=args.models_delay, die_with=die_with, max_in_flight=args.max_in_flight,
                    max_per_second=args.max_per_second, retry_after=args.retry_after) as server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
