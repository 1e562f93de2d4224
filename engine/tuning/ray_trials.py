"""Trials on Ray, for users who outgrow one machine: the driver keeps the search, the order and the money; a
Ray task evaluates one admitted trial and hands back what it measured, what it spent and what it was answered.

- Money: the driver admits each trial at its worst case (the same `OrderedAdmission` as on one machine), the
  task runs under an allowance of exactly that amount, and the driver settles the allowance with the figures
  the task returns. A task that dies (its worker or its whole node lost) leaves its whole reservation counted
  as "possibly billed": the trial is recorded as failed, the tune goes on on the nodes left, and the budget
  holds whatever happens on a worker. Tasks are never retried by Ray (a retry could pay twice).
- Placement: tasks are spread over the cluster's nodes (Ray's SPREAD strategy), not packed on the head.
- Cache: a task on another node uses a scratch cache and hands every response it was answered back to the
  driver, which writes it to its own LMDB, so a rerun on the driver pays nothing. A task on the driver's own
  Ray node (`share_cache`) reads and writes the driver's cache directly instead (and takes part in its
  cross-process in-flight claims): nothing to hand back, nothing written twice.
- Code: Ray ships the TuneSpec (data, eval_func) to the workers by pickling; the engine must be installed
  where the workers run (a local Ray started here uses this interpreter).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import logging
import os
import pickle
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..requests.budget import BudgetGuard
from ..requests.cache import CacheRoot
from ..core.errors import ConfigError, EngineError
from ..evaluate.evaluator import Evaluator
from ..core.models import ModelCatalog
from ..requests.providers import ProviderClient, RetryPolicy
from ..core.records import TrialRecord
from ..requests.requester import Requester
from .spec import RaySettings, TuneSpec
from .stages import StageRunner

logger = logging.getLogger("engine")


@dataclass
class TrialJob:
    """What a Ray task needs to evaluate one trial; everything in it is pickled to the worker."""

    spec: TuneSpec
    catalog: ModelCatalog
    seed: int | str
    record: TrialRecord
    best: float | None
    allowance: float  # the trial's worst case, admitted by the driver
    concurrency: int  # requests in flight for this trial
    policy: RetryPolicy
    timeout: float
    cache_host: str  # the driver's machine, Ray node and cache folder
    cache_node: str
    cache_path: str
    share_cache: bool


@dataclass
class TrialResult:
    """What a Ray task hands back: the filled record, the allowance's figures, the responses it was answered."""

    record: TrialRecord
    charged: float
    paid: float
    unanswered: float
    unanswered_requests: int
    responses: list[tuple[int | str, bytes, dict]] = field(default_factory=list)  # (seed, cache key, response)
    worker: str = ""  # host:pid, for the record and the tests
    node: str = ""  # the Ray node id the task ran on
    error: BaseException | None = None


class _RecordingCache:
    """A response cache that remembers what was put in it, for the driver."""

    def __init__(self, cache, seed, sink: list):
        self._cache, self._seed, self._sink = cache, seed, sink
        self.inflight = cache.inflight

    def get(self, key: bytes):
        return self._cache.get(key)

    def put(self, key: bytes, value: dict) -> str | None:
        self._sink.append((self._seed, key, value))  # shipped to the driver even if this disk refused it
        return self._cache.put(key, value)


class RecordingCacheRoot(CacheRoot):
    """A cache root whose caches record their new responses in `self.new`."""

    def __init__(self, root):
        super().__init__(root)
        self.new: list[tuple[int | str, bytes, dict]] = []
        self._recording: dict = {}

    def for_seed(self, seed):
        wrapper = self._recording.get(seed)
        if wrapper is None:
            wrapper = self._recording[seed] = _RecordingCache(super().for_seed(seed), seed, self.new)
        return wrapper


def _providers(policy: RetryPolicy, timeout: float) -> ProviderClient:
    """The worker process's clients and loop: its own session's (made on first use, then reused by every
    trial this worker runs), with the driver's retry policy and timeout."""
    from ..session import current_session

    return current_session().providers.with_settings(policy, timeout)


def evaluate_trial(job: TrialJob) -> TrialResult:
    """The body of the Ray task: one trial's stages on this worker, under the driver's allowance."""
    node = _node_id()
    local = (job.share_cache and node and job.cache_node == node and job.cache_host == socket.gethostname()
             and Path(job.cache_path).is_dir())
    with contextlib.ExitStack() as stack:
        if local:  # the driver's own cache: what is answered is there already, nothing to hand back
            caches = CacheRoot(job.cache_path)
        else:
            caches = RecordingCacheRoot(stack.enter_context(tempfile.TemporaryDirectory(prefix="engine-ray-")))
            stack.callback(caches.close)
        providers = _providers(job.policy, job.timeout)
        requester = Requester(job.catalog, caches, providers)
        allowance = BudgetGuard(job.allowance)
        error = None

        async def run():
            loop = asyncio.get_running_loop()
            stages = StageRunner(job.spec, job.catalog, lambda fn, *args: loop.run_in_executor(None, fn, *args))
            evaluator = Evaluator(requester, job.seed, job.concurrency, allowance, job.spec.force_chat,
                                  progress=False, slots=asyncio.Semaphore(job.concurrency), pinned=job.spec.pinned)
            await stages.evaluate(job.record, evaluator, job.best, f"trial {job.record.number}")

        try:
            providers.loop.run(run())
        except Exception as exc:  # noqa: BLE001 - handed back with the money figures; the driver raises it
            error = exc if _picklable(exc) else EngineError(f"{type(exc).__name__}: {exc}")
        return TrialResult(job.record, allowance.charged, allowance.paid, allowance.unanswered,
                           allowance.unanswered_requests, getattr(caches, "new", []), _where(), node, error)


class RayTrials:
    """Evaluates admitted trials as Ray tasks; used by the Tuner in place of its local stage runner."""

    def __init__(self, settings: RaySettings, spec: TuneSpec, requester: Requester, seed: int | str):
        self.settings = settings
        self.spec = spec
        self.requester = requester
        self.seed = seed
        self.workers_seen: set[str] = set()
        self.nodes_seen: dict[str, int] = {}  # Ray node id: trials that came back from it
        self.shipped = 0  # responses handed back by tasks on other nodes and written to the driver's cache
        self.lost: list[int] = []  # trials whose task died (its worker or node lost), kept as possibly billed
        self._lost_in_a_row = 0
        self._ray = _connect(settings)
        self._node = _node_id()  # the driver's node: its tasks may share the driver's cache
        # SPREAD: a trial per node in turn (the default packs the head first); no retry: it could pay twice
        self._remote = self._ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(evaluate_trial)
        ship_by_value(self._ray, spec.eval_func)
        warm_up(self._ray, settings.workers)

    def describe(self) -> str:
        resources = self._ray.cluster_resources()
        nodes = sum(1 for n in self._ray.nodes() if n.get("Alive"))
        return f"{nodes} node(s), {resources.get('CPU', 0):g} CPUs"

    def _list_price(self, response: dict) -> float:
        """A shipped response's cost by the model it names (0 when that name is not in the catalog)."""
        try:
            return self.requester.cost(str(response.get("model") or ""), response)
        except ConfigError:
            return 0.0

    async def evaluate(self, record: TrialRecord, allowance: BudgetGuard, best: float | None) -> None:
        """Run the trial on a worker and fold what it did into `record` and `allowance`; the driver's cache
        receives every response the worker was answered. A lost task (its worker or node died) keeps its
        whole allowance as possibly billed and its trial is recorded as failed; the tune goes on, unless tasks
        keep dying (more in a row than trials in flight, plus two): then it stops with an EngineError."""
        providers = self.requester.providers
        job = TrialJob(self.spec, self.requester.catalog, self.seed, record, best, allowance.limit,
                       max(1, self.spec.concurrency // self.settings.workers), providers.policy, providers.timeout,
                       socket.gethostname(), self._node, str(self.requester.caches.root.resolve()),
                       self.settings.share_cache)
        try:
            result: TrialResult = await self._remote.remote(job)
        except self._ray.exceptions.RayTaskError as exc:  # the task failed there (a worker that cannot import
            allowance.unanswered_attempt(allowance.limit)  # what the trial needs): other trials would fail alike
            raise EngineError(f"trial {record.number} failed on its Ray worker: {_last_line(exc)}") from None
        except self._ray.exceptions.RayError as exc:  # its worker or node died
            self._lose(record, allowance, exc)
            return
        self._lost_in_a_row = 0
        self.shipped += len(result.responses)
        for seed, key, response in result.responses:
            refused = self.requester.caches.for_seed(seed).put(key, response)
            if refused:
                self.requester.caches.unkept.add(self._list_price(response), refused)
        allowance.add_spent(result.charged, result.paid, result.unanswered, result.unanswered_requests)
        record.__dict__.update(result.record.__dict__)
        self.workers_seen.add(result.worker)
        self.nodes_seen[result.node] = self.nodes_seen.get(result.node, 0) + 1
        if result.error is not None:
            raise result.error

    def _lose(self, record: TrialRecord, allowance: BudgetGuard, exc: BaseException) -> None:
        """A task that died may have spent its whole allowance, and what it was answered died with it: keep
        the allowance counted as possibly billed, and record the trial as failed (FLAML moves on)."""
        allowance.unanswered_attempt(allowance.limit)
        self.lost.append(record.number)
        self._lost_in_a_row += 1
        cause = f"{type(exc).__name__}: {_last_line(exc)}"
        if self._lost_in_a_row > self.spec.trials + 2:
            raise EngineError(f"{self._lost_in_a_row} trials in a row were lost on their Ray workers, each counted "
                              f"at its worst case as possibly billed; stopping. The last: {cause}")
        record.pruned = "error"
        record.error = (f"lost on its Ray worker, counted at its worst case ${allowance.limit:.6f} as possibly "
                        f"billed: {cause}")
        logger.warning("trial %s %s", record.number, record.error)


def ship_by_value(ray, fn) -> list[str]:
    """Modules a worker cannot import by name (a task pack loaded from its file, a script's helpers) are
    pickled with the function that needs them instead: eval_func's and those of the functions it closes over."""
    functions = [fn] + [c.cell_contents for c in (getattr(fn, "__closure__", None) or ())
                        if callable(getattr(c, "cell_contents", None))]
    shipped = []
    for function in functions:
        name = getattr(function, "__module__", None)
        module = sys.modules.get(name or "")
        if module is None or name == "__main__" or name in shipped:
            continue  # cloudpickle ships __main__ by value already
        top = name.partition(".")[0]  # found on the import path, not only in this process's sys.modules
        if top not in sys.builtin_module_names and importlib.machinery.PathFinder.find_spec(top) is None:
            ray.cloudpickle.register_pickle_by_value(module)
            shipped.append(name)
    return shipped


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _node_id() -> str:
    """This process's Ray node ("" where Ray cannot say, e.g. a ray:// client: its tasks then use scratch)."""
    import ray

    try:
        return ray.get_runtime_context().get_node_id() or ""
    except Exception:  # noqa: BLE001 - no node to share a cache with
        return ""


def warm_up(ray, workers: int) -> set[str]:
    """A fresh worker spends seconds importing the engine: pay it once per worker, before the first trial
    (spread as the trials are, so that each node's workers are warm)."""
    where = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_where)
    return set(ray.get([where.remote() for _ in range(workers)]))


def _picklable(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
        return True
    except Exception:  # noqa: BLE001 - any failure means: send it as text
        return False


def _last_line(exc: BaseException) -> str:
    """A Ray error's last line: the cause, under the remote traceback Ray puts above it."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _connect(settings: RaySettings):
    """The Ray runtime: the one this process is already connected to, the address given, or a local one
    started here with this interpreter's import path (so that workers import what the driver imports)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("parallel=ray needs Ray, the [ray] extra: pip install 'engine[ray]' (make setup "
                          "installs it)") from None
    if ray.is_initialized():
        return ray
    address = None if settings.address in (None, "local") else settings.address
    runtime_env = None
    if address is None:
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
    logger.info("connecting to Ray at %s", address or "a local instance started on demand")
    try:
        ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True,
                 **({"num_cpus": max(settings.workers, os.cpu_count() or 1)} if address is None else {}))
    except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
        raise ConfigError(f"cannot start or reach Ray at {address or 'a local instance'}: {_last_line(exc)}") from None
    return ray
