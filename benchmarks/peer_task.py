"""The task both tuners get in `make bench-peer`: data, prompts and eval_func, importable without the engine
(the seed library's venv has openai<1, the engine's openai v1+)."""
import re

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(3, 8) for b in range(2, 6)]  # 20
PROMPTS = ["{question}", "Think step by step. {question}"]
MODEL = "gpt-3.5-turbo"  # a name the seed library prices: $0.0015 / $0.002 per 1K tokens
PRICE_PER_1K = {"prompt": 0.0015, "completion": 0.002}


def eval_func(responses, **point):
    """Right when the first number of an answer is the sum (the loopback server answers with it first)."""
    ok = [bool(re.match(rf"\s*{point['answer']}\b", r)) for r in responses]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}
