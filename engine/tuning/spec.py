"""What the user asked of a tune, checked before a cent is spent."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..core.errors import BudgetError, ConfigError
from ..core.stats import aggregation
from ..core.templates import check_text
from .selection import check_rule


def check_budget(name: str, value) -> None:
    """A budget is None (no cap) or a finite number of dollars above zero."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BudgetError(f"{name} must be a finite number of dollars > 0, got {value!r}")


@dataclass(frozen=True)
class RaySettings:
    """Where trials run: `address` None starts a local Ray on demand ("auto": the running cluster,
    "ray://host:10001": a remote one); `workers` trials at once; `share_cache`: tasks on the driver's machine
    use its cache directly (off: every response goes through the driver, as it does from other machines)."""

    address: str | None = None
    workers: int = 2
    share_cache: bool = True

    def __post_init__(self):
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"parallel.workers must be a positive integer, got {self.workers!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(f"parallel.address must be null, auto, ray://host:port or host:port, "
                              f"got {self.address!r}")


@dataclass
class TuneSpec:
    """The seed API's `tune(...)` arguments, as one value.

    `space` updates the default search space (the seed's `**config`); `concurrency` bounds requests in
    flight across all trials ("auto" or None: each endpoint's limit adapts up to its model's ceiling, and
    the Tuner `resolve`s it to the highest ceiling of the models searched; a number pins it), `trials` the
    trials in flight together.
    """

    data: Sequence[Mapping]
    metric: str
    mode: str
    eval_func: Callable
    inference_budget: float | None = None
    optimization_budget: float | None = None
    num_samples: int = 1
    log_file_name: str | None = None
    concurrency: int | str | None = "auto"
    force_chat: bool = False
    progress: bool = True
    space: dict = field(default_factory=dict)
    trials: int | None = None  # trials in flight together; None: half of `concurrency` (at least 1)
    ray: RaySettings | None = None  # trials on Ray workers instead of this process's event loop
    selection: str = "best"  # which trial ships: best (cost breaks ties) or 1se (see tuning/selection.py)
    pinned: bool = field(default=True, init=False)  # False: `concurrency` is a ceiling, the limits adapt
    agg_method: Any = "avg"  # how the metric is aggregated over points, as in `test` (core/stats.py `aggregation`)

    def __post_init__(self):
        self.data = list(self.data)
        check_text(self.data)
        if self.mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if not self.data:
            raise ConfigError("data is empty: tuning needs at least one data point")
        if not callable(self.eval_func):
            raise ConfigError("eval_func must be callable: eval_func(responses, **data_point) -> dict of metrics")
        check_budget("inference_budget", self.inference_budget)
        check_budget("optimization_budget", self.optimization_budget)
        if not isinstance(self.num_samples, int) or self.num_samples == 0 or self.num_samples < -1:
            raise ConfigError(f"num_samples must be a positive integer or -1, got {self.num_samples!r}")
        if self.num_samples == -1 and self.optimization_budget is None:
            raise ConfigError("num_samples=-1 needs an optimization_budget to end the search")
        if self.concurrency in (None, "auto"):
            self.concurrency, self.pinned = None, False
        elif not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool) or self.concurrency < 1:
            raise ConfigError(f"concurrency must be a positive integer or 'auto', got {self.concurrency!r}")
        check_rule(self.selection)
        self.aggregate = aggregation(self.agg_method, self.metric)  # the tuned metric's; checked here
        if isinstance(self.ray, dict):
            self.ray = RaySettings(**self.ray)
        if self.concurrency is not None:
            self.resolve(self.concurrency)
        if self.trials is not None and (not isinstance(self.trials, int) or isinstance(self.trials, bool)
                                        or self.trials < 1):
            raise ConfigError(f"trials must be a positive integer (trials in flight together), got {self.trials!r}")

    def resolve(self, ceiling: int) -> None:
        """With `concurrency` auto: requests in flight across all trials are bounded by `ceiling` (the highest
        of the searched models'), and trials in flight default to half of it, enough to fill it."""
        if self.concurrency is None:
            self.concurrency = ceiling
        if self.trials is None:
            self.trials = self.ray.workers if self.ray else max(1, self.concurrency // 2)

