"""The task registry and each experiment pack's eval on known right and wrong answers."""
import textwrap

import pytest

from engine.core.config import TaskConfig
from engine.core.errors import ConfigError
from engine.tasks import TASKS, discover, experiments_dir, load_task
from engine.tasks.metrics import METRICS


def task(name, **kwargs):
    return load_task(TaskConfig(name=name, **kwargs))


def test_every_pack_registers_and_the_task_list_and_unknown_names_show_the_registry(capsys):
    from engine.tasks.__main__ import main as list_tasks

    discover()
    names = TASKS.names()
    packs = {path.stem for path in experiments_dir().glob("*.py") if not path.stem.startswith("_")}
    modules = {TASKS.get(name).__module__ for name in names}
    assert packs and {f"engine_experiments.{pack}" for pack in packs} <= modules  # every pack registered a task
    list_tasks()  # `python -m engine.tasks`
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "tasks:" and [line.split()[0] for line in lines[1:1 + len(names)]] == names
    assert lines[1 + len(names)].startswith("metrics for generic tasks:")  # each listed once, in order, no other
    with pytest.raises(ConfigError) as unknown:
        task("nope")
    assert str(unknown.value) == f"unknown task 'nope'; known: {', '.join(names)}"


def test_a_task_dropped_in_a_folder_registers_itself(tmp_path):
    (tmp_path / "my_pack.py").write_text(textwrap.dedent('''
        from engine.tasks import TASKS, Task, success_eval_func
        from engine.tasks.metrics import exact_match

        @TASKS.register("colors")
        def colors(cfg):
            """Colors of things."""
            points = [{"thing": "sky", "answer": "blue"}, {"thing": "grass", "answer": "green"}]
            return Task(name="colors", points=points, eval_func=success_eval_func(exact_match),
                        prompts=["What color is the {thing}?"])
    '''))
    discover(tmp_path)
    t = task("colors")
    assert t.eval_func(["Blue."], **t.points[0])["success"] and not t.eval_func(["red"], **t.points[0])["success"]


def test_generic_task_from_config(tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text("q,gold\nWhat is 2+2?,4\nWhat is 3+3?,6\nWhat is 1+1?,2\nWhat is 5+5?,10\n")
    t = task("generic", path=str(data), answer_field="gold", metric="numeric_match", prompts=["{q}"])
    assert len(t.split("tune")) == 2 and len(t.split("test")) == 2
    assert t.eval_func(["It is 4."], q="x", gold="4") == {"success": True, "success_rate": 1.0}
    with pytest.raises(ConfigError, match="task.answer_field"):
        task("generic", path=str(data), answer_field="answer", prompts=["{q}"])
    with pytest.raises(ConfigError, match="unknown metric 'fuzzy'"):
        task("generic", path=str(data), answer_field="gold", metric="fuzzy", prompts=["{q}"])


def test_a_bad_jsonl_line_is_named_with_its_file_and_line(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": "What is 2+2?", "answer": "4"}\n\n{"q": "What is 3+3?", "answer": 6\n')
    with pytest.raises(ConfigError, match=rf"{data}:3: not a JSON object"):
        task("generic", path=str(data), prompts=["{q}"])


def test_a_csv_row_without_an_answer_is_refused_not_graded_as_none(tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text("q,answer\nWhat is 2+2?,4\nWhat is 3+3?\nWhat is 1+1?,2\n")
    with pytest.raises(ConfigError, match=rf"'answer' has no value in {data}:3 \(1 point\(s\) lack it\)"):
        task("generic", path=str(data), prompts=["{q}"])


def test_builtin_metrics():
    assert METRICS.get("exact_match")(" Paris. ", "paris")
    assert METRICS.get("contains")("The capital is Paris.", "Paris")
    assert METRICS.get("numeric_match")("2 + 3 = 5", 5) and not METRICS.get("numeric_match")("5 + 3", 5)
    assert METRICS.get("regex")("ANSWER: blue", "blue", pattern=r"ANSWER: (\w+)")


def test_arithmetic_eval():
    t = task("arithmetic")
    point = t.points[0]
    right, wrong = str(point["answer"]), str(point["answer"] + 1)
    assert t.eval_func([f"The answer is {right}."], **point)["success"]
    assert not t.eval_func([wrong], **point)["success"]
    assert t.eval_func([wrong, right], **point) == {"success": True, "success_rate": 0.5}
    assert t.split("tune") and t.split("test") and not set(map(str, t.split("tune"))) & set(map(str, t.split("test")))


def test_capitals_eval():
    t = task("capitals")
    france = next(p for p in t.points if p["country"] == "France")
    assert t.eval_func(["The capital of France is Paris."], **france)["success"]
    assert not t.eval_func(["Lyon"], **france)["success"]


def test_math_extractor_and_equivalence():
    t = task("math")
    point = {"question": "?", "answer": 60}
    assert t.eval_func(["So 3/4 of 80 is \\boxed{60}."], **point)["success"]
    assert t.eval_func(["The answer is 60."], **point)["success"]
    assert t.eval_func(["\\boxed{\\frac{120}{2}}"], **point)["success"]
    assert t.eval_func(["It comes to 60.0 in total"], **point)["success"]
    assert not t.eval_func(["\\boxed{61}"], **point)["success"]
    assert not t.eval_func(["no idea"], **point)["success"]
    assert len(t.points) == 40


def test_humaneval_has_164_problems_and_grades_in_a_sandbox():
    t = task("humaneval")
    assert len(t.points) == 164
    problem = t.points[0]
    canonical = problem["canonical_solution"]
    assert t.eval_func([canonical], **problem)["success"]
    whole = f"```python\n{problem['prompt']}{canonical}```"
    assert t.eval_func([whole], **problem)["success"]
    assert not t.eval_func(["    return None\n"], **problem)["success"]
