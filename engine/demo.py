"""`make run` until the tuner lands: a few questions to the embedded model, with cost and cache hits."""
from __future__ import annotations

import time

from . import Completion

QUESTIONS = [("What is 2 + 3?", "5"), ("What is the capital of France?", "Paris"),
             ("What is 7 + 8?", "15"), ("What is the capital of Italy?", "Rome")]


def main() -> None:
    config = dict(model="smollm2", prompt="Answer in one word. {question}", max_tokens=8, temperature=0)
    total = 0.0
    print(f"{'question':34} {'answer':14} {'ok':3} {'$':>10} {'ms':>7}")
    for question, truth in QUESTIONS:
        start = time.perf_counter()
        r = Completion.create(context={"question": question}, **config)
        ms = (time.perf_counter() - start) * 1000
        text = Completion.extract_text(r)[0].strip().replace("\n", " ")
        cost = Completion.cost("smollm2", r)
        total += cost
        print(f"{question:34} {text[:14]:14} {'yes' if truth in text else 'no':3} {cost:10.7f} {ms:7.1f}")
    print(f"nominal cost of the answers: ${total:.7f}; rerun to see every answer come from the cache")


if __name__ == "__main__":
    main()
