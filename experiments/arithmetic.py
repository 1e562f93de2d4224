"""Arithmetic: two-number additions and subtractions, generated deterministically (seed 7)."""
import random

from engine.tasks import TASKS, Task, success_eval_func
from engine.tasks.metrics import numeric_match

PROMPTS = [
    "{question}",
    "Answer with just the number. {question}",
    "Calculate {a} {op} {b}. Reply with the result only.",
]


def problems(count: int = 60, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b, op = rng.randint(1, 50), rng.randint(1, 50), rng.choice("+-")
        answer = a + b if op == "+" else a - b
        out.append({"question": f"What is {a} {op} {b}?", "a": a, "b": b, "op": op, "answer": answer})
    return out


@TASKS.register("arithmetic")
def arithmetic(cfg) -> Task:
    """Two-number + and - questions; right when the last number in the answer is the result."""
    return Task(name="arithmetic", points=problems(), eval_func=success_eval_func(numeric_match), prompts=PROMPTS,
                stops=[None, ["\n"]], max_tokens=["lograndint", 4, 16], test_fraction=cfg.test_fraction,
                description="two-number + and - questions, numeric match on the last number")
