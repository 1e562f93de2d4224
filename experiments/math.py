"""Math: grade-school word problems authored in this repo, with a final-answer extractor.

The answer is taken from \\boxed{...}, else from "the answer is ...", else the last number; it is
right when it equals the reference as a number (fractions, decimals, commas and $ allowed) or as text.
"""
import re
from pathlib import Path

from engine.tasks import TASKS, Task, success_eval_func
from engine.tasks.generic import read_points
from engine.tasks.metrics import last_number, normalize, to_number

PROMPTS = [
    "{question}",
    "Solve step by step, then give the final answer as \\boxed{{answer}}. {question}",
    "{question} Answer with the final number only.",
]


def extract_answer(text: str) -> str | None:
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    m = re.search(r"answer is[:\s]*\$?([-\d.,/]+)", text, re.IGNORECASE)
    if m:
        return m.group(1).rstrip(".,")
    number = last_number(text)
    return None if number is None else str(number)


def _boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def is_equivalent(predicted: str | None, reference) -> bool:
    if predicted is None:
        return False
    a, b = to_number(_strip_latex(predicted)), to_number(str(reference))
    if a is not None and b is not None:
        return a == b
    return normalize(_strip_latex(predicted)) == normalize(str(reference))


def _strip_latex(text: str) -> str:
    text = re.sub(r"\\d?frac\{([^}]*)\}\{([^}]*)\}", r"\1/\2", text)
    return text.replace("\\$", "").replace("\\%", "").replace("\\!", "").replace("{", "").replace("}", "")


def math_match(response: str, answer, **_) -> bool:
    return is_equivalent(extract_answer(response), answer)


@TASKS.register("math")
def math_task(cfg) -> Task:
    """Grade-school word problems (authored); right when the final answer is numerically equivalent."""
    points = read_points(str(Path(__file__).parent / "data" / "math.jsonl"))
    return Task(name="math", points=points, eval_func=success_eval_func(math_match), prompts=PROMPTS,
                max_tokens=["lograndint", 32, 256], test_fraction=cfg.test_fraction, description="grade-school math, final-answer equivalence")
