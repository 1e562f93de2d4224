"""Hydra composition, overrides and validation against the real conf/ folder."""
import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from tests.support.helpers import composed
from engine.core.config import to_run_config
from engine.core.errors import ConfigError
from engine.runner import search_space
from engine.tasks import load_task
from engine.tuning.space import to_domain


def test_defaults_compose_into_a_typed_run_config():
    run = to_run_config(composed())
    assert run.model.name == "smollm2" and run.model.provider == "embedded" and run.model.ignores_n
    assert run.task.name == "arithmetic" and run.budget.optimization > 0 and run.cache.seed == 41
    assert run.parallel.concurrency == "auto"  # adapts per endpoint up to the model's ceiling (2 for smollm2)


def test_the_keys_users_type_override():
    run = to_run_config(composed("model=gpt-4o-mini", "task=capitals", "search=greedy", "budget.inference=0.001",
                                 "budget.optimization=0.05", "budget.num_samples=7", "cache.seed=7",
                                 "cache.path=/tmp/c", "parallel.concurrency=2"))
    assert (run.model.name, run.task.name, run.search.temperature, run.search.n) == ("gpt-4o-mini", "capitals", 0, 1)
    assert (run.budget.inference, run.budget.optimization, run.budget.num_samples) == (0.001, 0.05, 7)
    assert (run.cache.seed, run.cache.path, run.parallel.concurrency) == (7, "/tmp/c", 2)
    assert run.model.price_per_1k == {"prompt": 0.00015, "completion": 0.0006}


def test_parallel_ray_is_one_choice_of_the_parallel_group():
    local = to_run_config(composed())
    assert local.parallel.backend == "local" and local.parallel.ray_settings() is None
    run = to_run_config(composed("parallel=ray", "parallel.address=auto", "parallel.workers=3"))
    assert run.parallel.ray_settings() == {"address": "auto", "workers": 3, "share_cache": True}
    with pytest.raises(ConfigError, match="parallel.backend"):
        to_run_config(composed("parallel.backend=dask"))


@pytest.mark.parametrize("override, where", [
    ("budget.optimization=lots", "budget.optimization"),
    ("parallel.workers=many", "parallel.workers"),
    ("model.cost=3", "cost"),
])
def test_a_wrong_key_or_type_fails_naming_the_key_path(override, where):
    with pytest.raises((ConfigCompositionException, ValidationError, ConfigKeyError)) as info:
        composed(override)
    assert where in str(info.value) + str(info.value.__cause__)


def test_a_key_forced_in_with_plus_is_still_rejected():
    with pytest.raises(ConfigError, match=r"budget.dollars: unknown key; budget has \['inference'"):
        to_run_config(composed("+budget.dollars=3"))


@pytest.mark.parametrize("override, where", [
    ("budget.optimization=-1", "budget.optimization"),
    ("budget.optimization=inf", "budget.optimization"),
    ("budget.inference=nan", "budget.inference"),
    ("budget.num_samples=0", "budget.num_samples"),
    ("parallel.concurrency=0", "parallel.concurrency"), ("parallel.concurrency=many", "parallel.concurrency"),
    ("tracking.uri=foo://mlflow.internal", r"tracking.uri: 'foo://mlflow.internal' has an unknown scheme 'foo'; use"),
    ("task.tune_size=0", "task.tune_size: invalid value 0"), ("task.test_size=-5", "task.test_size: invalid value -5"),
    ("requests.timeout=0", "requests.timeout"), ("requests.timeout=-1", "requests.timeout"),
    ("requests.max_retry_period=nan", "requests.max_retry_period"), ("requests.jitter=-1", "requests.jitter"),
    ("requests.retry_wait_time=-0.5", "requests.retry_wait_time"), ("model.context_length=-1", "model.context_length"),
    ("search.prompts=[]", "search.prompts"), ("selection.rule=cheapest", "selection.rule: invalid value 'cheapest'"),
    ("budget.test=0", "budget.test"),
])
def test_invalid_values_fail_before_any_request_naming_the_key_path(override, where):
    with pytest.raises(ConfigError, match=where):
        to_run_config(composed(override))


def test_search_domains_are_declared_in_yaml():
    from engine.tuning.space import Categorical, Float, Integer
    assert isinstance(to_domain({"uniform": [0, 2]}, "x"), Float)
    assert isinstance(to_domain(["uniform", 0, 2], "x"), Float)
    assert isinstance(to_domain({"lograndint": [8, 64]}, "x"), Integer)
    assert isinstance(to_domain([0.1, 0.5], "x"), Categorical)
    assert to_domain(0.3, "x") == 0.3
    with pytest.raises(ConfigError, match="search.temperature"):
        to_domain({"gaussian": [0, 1]}, "search.temperature")


@pytest.mark.parametrize("override, says", [
    ("search.max_tokens=[bogus,1,2]", r"search.max_tokens: 'bogus' is not a search domain; write a number, a list "
                                      r"of numbers to choose among \(or \[choice, a, b, ...\]\), or \[name, low, high\]"),
    ("search.temperature=[uniformm,0,1]", r"'uniformm' is not a search domain \(did you mean uniform\?\)"),
    ("search.n=[randint,0,3]", r"n must be >= 1 everywhere in the search space, got randint\(0, 3\)"),
    ("search.max_tokens=[choice,8,1.5]", r"max_tokens must be a whole number, got choice\(\[8, 1.5\]\)"),
])
def test_a_bad_search_domain_names_the_key_and_the_allowed_forms(override, says):
    from engine.tuning import build_space
    run = to_run_config(composed(override))
    with pytest.raises(ConfigError, match=says):
        build_space(search_space(run, load_task(run.task)))


def test_search_space_takes_task_defaults_and_overrides():
    run = to_run_config(composed("task=capitals", "search.temperature=[uniform,0,1]", "search.max_tokens=[randint,4,12]"))
    task = load_task(run.task)
    space = search_space(run, task)
    assert space["model"] == "smollm2" and space["prompt"] == task.prompts and space["stop"] == task.stops
    assert "temperature" in space and "top_p" not in space
    assert (space["max_tokens"].lower, space["max_tokens"].upper) == (4, 12)
    run = to_run_config(composed("search.prompts=[\"Q: {question}\"]", "search.models=[smollm2,gpt-4o-mini]"))
    space = search_space(run, load_task(run.task))
    assert space["prompt"] == ["Q: {question}"] and space["model"] == ["smollm2", "gpt-4o-mini"]
