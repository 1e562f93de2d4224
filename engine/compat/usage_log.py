"""The seed library's book-keeping (`start_logging`, `logged_history`, `print_usage_summary`) for one session.

0.1.x kept it in class attributes; here one UsageLog belongs to the session that made the calls, so two
sessions (threads, tests) never mix their histories. What it holds may be printed or saved by the user: the
requests are the payloads as sent (no credentials ever reach a payload) and pass through `public_view`.
"""
from __future__ import annotations

from collections import defaultdict

from ..core.digests import get_key
from ..core.redaction import public_view


class UsageLog:
    """Compact: one entry per conversation ({"created_at", "cost", "token_count"} lists, keyed by the
    conversation); full: one {"request", "response"} per call, keyed by the call's index."""

    def __init__(self, history: dict | None = None, compact: bool = True, count: int = 0):
        self.history = {} if history is None else history
        self.compact = compact
        self.count = count

    def record(self, request: dict, response: dict, cost: float) -> None:
        if not self.compact:
            self.history[self.count] = {"request": public_view(request), "response": {**response, "cost": cost}}
            self.count += 1
            return
        value = {"created_at": [], "cost": [], "token_count": []}
        if "messages" in request:
            messages = request["messages"]
            if len(messages) > 1 and messages[-1]["role"] != "assistant":  # the conversation goes on
                value = self.history.pop(get_key(messages[:-1]), value)
            key = get_key(messages + [choice["message"] for choice in response["choices"]])
        else:
            key = get_key([request["prompt"]] + [choice.get("text") for choice in response["choices"]])
        usage = response.get("usage") or {}
        value["created_at"].append(self.count)
        value["cost"].append(cost)
        value["token_count"].append({"model": response.get("model"), "prompt_tokens": usage.get("prompt_tokens", 0),
                                     "completion_tokens": usage.get("completion_tokens", 0),
                                     "total_tokens": usage.get("total_tokens", 0)})
        self.history[key] = value
        self.count += 1

    def summary(self) -> tuple[float, dict]:
        """(total cost, {model: {prompt_tokens, completion_tokens, total_tokens}})."""
        tokens = defaultdict(lambda: {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        if self.compact:
            total = sum(sum(v["cost"]) for v in self.history.values())
            entries = [(t["model"], t) for v in self.history.values() for t in v["token_count"]]
        else:
            total = sum(v["response"]["cost"] for v in self.history.values())
            entries = [(v["response"].get("model"), v["response"].get("usage") or {}) for v in self.history.values()]
        for model, usage in entries:
            for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
                tokens[model][field] += usage.get(field, 0) or 0
        return total, dict(tokens)

    def print_summary(self) -> None:
        total, tokens = self.summary()
        print(f"Total cost: {total}", flush=True)
        for model, counts in tokens.items():
            print(f"Token count summary for model {model}: prompt_tokens: {counts['prompt_tokens']}, "
                  f"completion_tokens: {counts['completion_tokens']}, total_tokens: {counts['total_tokens']}",
                  flush=True)
