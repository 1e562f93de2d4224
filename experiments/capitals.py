"""Capitals: 'What is the capital of X?', scored by whether the answer names the capital."""
from pathlib import Path

from engine.tasks import TASKS, Task, success_eval_func
from engine.tasks.generic import read_points
from engine.tasks.metrics import contains

PROMPTS = [
    "What is the capital of {country}?",
    "Answer in one word. What is the capital of {country}?",
    "The capital of {country} is",
]


@TASKS.register("capitals")
def capitals(cfg) -> Task:
    """Capital cities of 60 countries; right when the answer contains the capital's name."""
    points = read_points(str(Path(__file__).parent / "data" / "capitals.jsonl"))
    return Task(name="capitals", points=points, eval_func=success_eval_func(contains), prompts=PROMPTS,
                stops=[None, ["\n"]], max_tokens=["lograndint", 4, 16], test_fraction=cfg.test_fraction,
                description="capital cities, answer must contain the capital")
