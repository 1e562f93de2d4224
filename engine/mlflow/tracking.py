"""MLflow tracking for one tune: a parent run (config, budgets, data, best config, plot) and one nested
child run per trial. Everything goes through an MlflowClient held by the Tracker: no global MLflow state,
and FLAML's own MLflow logging stays off (see engine.tuning).

What the UI shows, so that runs compare at a glance: the parent is named by what differs (the job's Hydra
overrides), each trial by its config (`trial-3 n=2 max_tokens=37 T=1.27`) with its real start and end, the
best trial tagged `best=true` and linked from the parent, whose params hold the best config (`best.*`) and
whose description is a one-line summary. Metric names carry their units (`_usd`); costs per instance are
also logged per 1K instances, which the UI's two-decimal display does not round to 0.00."""
from __future__ import annotations

import getpass
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..core.redaction import public_view
from ..core.secret_shapes import redact_text
from ..core.records import Summary, TrialRecord
from ..tuning.flaml_adapter import describe, is_domain
from .store import ensure_store

PARAM_MAX = 6000  # MLflow's limit on a param value
TAG_MAX = 5000  # a tag value is kept shorter than MLflow's limit
# the UI opens an experiment on its runs table (MLflow 3 otherwise guesses, and shows a GenAI traces overview)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
ABBREVIATIONS = {"temperature": "T"}  # how a trial's name spells a searched key
NAME_ORDER = ("n", "max_tokens", "temperature", "top_p", "model", "prompt", "messages", "stop")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def git_commit(cwd: str | None = None) -> str | None:
    """The commit of the engine's own repository (whatever folder the process runs in), or, for an engine
    installed from a VCS URL, the commit pip recorded; None when neither is known."""
    package = Path(__file__).resolve().parent.parent  # engine/
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=cwd or package)
        lines = top.stdout.split()
        if top.returncode == 0 and len(lines) == 2 and (cwd or Path(lines[0]).resolve() == package.parent):
            return lines[1]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return _installed_commit()


def _installed_commit() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        text = distribution("engine").read_text("direct_url.json")
    except (ImportError, PackageNotFoundError):
        return None
    try:
        return json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except ValueError:
        return None


def source_tags() -> dict[str, str]:
    """MLflow's standard tags: who ran what, from which commit of the engine."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    source = spec.name if spec is not None and spec.name else Path(sys.argv[0] or "python").name
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    tags = {"mlflow.source.name": source, "mlflow.source.type": "LOCAL", "mlflow.user": user}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _start_ticks(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), so that a reused pid is not taken for it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_tag() -> str:
    """`host:pid:start`: which process runs a tune, for telling a dead run from a live one later."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or '?'}"


def process_alive(tag: str) -> bool | None:
    """True or False for a process of this machine; None when it cannot be told (another host, no /proc)."""
    try:
        host, pid, ticks = tag.rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname() or ticks == "?" or not os.path.isdir("/proc/self"):
        return None
    return _start_ticks(pid) == ticks


SEARCHED = object()  # a key the tuner searches without a domain in the space


def _is_domain(value: Any) -> bool:
    return value is SEARCHED or is_domain(value)


def describe_domain(value: Any) -> Any:
    """A FLAML domain as the text that would write it (`lograndint(8, 64)`, `uniform(0, 2)`), a choice as
    {"choice": [...]}; constants stay as they are."""
    if value is SEARCHED or not is_domain(value):
        return value
    categories = getattr(value, "categories", None)
    return {"choice": list(categories)} if categories is not None else describe(value)


def readable_space(space: dict) -> dict:
    """The search space as plain data: domains as their text, choices as lists (credentials redacted)."""
    return public_view({k: describe_domain(v) for k, v in space.items()})


def space_text(space: dict) -> str:
    """One line per key (`max_tokens: lograndint(8, 64)`); a choice among long values says how many."""
    lines = []
    for key, value in readable_space(space).items():
        if isinstance(value, dict) and "choice" in value:
            value = value["choice"]
        if isinstance(value, list):
            short = all(isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 24) for v in value)
            value = f"choice({', '.join(map(str, value))})" if short else f"choice of {len(value)}"
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def _choices(value: Any) -> list | None:
    if isinstance(value, list):
        return value
    categories = getattr(value, "categories", None)
    return list(categories) if categories is not None else None


def trial_name(number: int, config: dict, space: dict | None) -> str:
    """`trial-3 n=2 max_tokens=37 T=1.27`: the keys the space searches, a chosen prompt by its index."""
    parts, space = [f"trial-{number}"], space or {}
    # the space's keys, and those the tuner searches of its own accord (temperature or top_p when neither is set)
    keys = set(space) | {k for k in ("temperature", "top_p") if isinstance(config.get(k), (int, float))}
    for key in sorted(keys, key=lambda k: (NAME_ORDER.index(k) if k in NAME_ORDER else 99, k)):
        domain, value = space.get(key, SEARCHED), config.get(key)
        choices = _choices(domain)
        if value is None or (choices is None and not _is_domain(domain)) or (choices is not None and len(choices) < 2):
            continue
        if choices is not None and not isinstance(value, (int, float)) and (key != "model"):
            shown = f"#{choices.index(value)}" if value in choices else "?"
        elif isinstance(value, float):
            shown = f"{value:.3g}"
        else:
            shown = str(value)
        parts.append(f"{ABBREVIATIONS.get(key, key)}={shown}")
    return " ".join(parts)


def _metrics(values: dict) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


def per_1k(values: dict) -> dict:
    """`..._usd_per_instance` also as `..._usd_per_1k_instances`."""
    return {k.replace("_per_instance", "_per_1k_instances"): v * 1000 for k, v in values.items()
            if k.endswith("_usd_per_instance") and isinstance(v, (int, float)) and not isinstance(v, bool)}


TEST_NAMES = {"cost": "cost_usd", "inference_cost": "inference_cost_usd_per_instance", "spent": "paid_usd",
              "saved": "saved_by_cache_usd", "unanswered_usd": "unanswered_usd"}


def parent_metrics(tune_metrics: dict, tested, summary: Summary) -> dict:
    """The parent run's numbers: `tune_<metric>`, `test_<metric>`, the test's costs with units (from its
    accounting, apart from eval_func's metrics), and the run's totals (`paid_usd`, `saved_by_cache_usd`, trials)."""
    out = {f"tune_{k}": v for k, v in tune_metrics.items()}
    out.update({f"test_{k}": v for k, v in tested.metrics.items()})
    out.update({f"test_{TEST_NAMES.get(k, k)}": v for k, v in tested.accounting.items()})
    for phase, interval in (("tune", summary.tune_interval), ("test", summary.test_interval)):
        if interval is not None:
            out.update({f"{phase}_{k}": v for k, v in interval.as_metrics(summary.metric).items()})
    out.update(per_1k(out))
    out.update({"paid_usd": summary.paid, "tune_paid_usd": summary.tune_paid, "saved_by_cache_usd": summary.saved,
                "trials": summary.trials, "trials_pruned": summary.pruned, "cache_hits": summary.cache_hits,
                "requests": summary.requests})
    return out


def summary_line(summary: Summary) -> str:
    """The run's description: what won, why, how sure its numbers are and what it costs."""
    def fmt(value, interval):
        if value is None:
            return "-"
        return f"{value:.3f} [{interval.low:.3f}, {interval.high:.3f}]" if interval else f"{value:.3f}"

    per_1k_usd = (summary.test_cost_per_instance or 0.0) * 1000
    carry = summary.carry_over()
    return (f"{summary.metric} {fmt(summary.test_metric, summary.test_interval)} on test, "
            f"{fmt(summary.tune_metric, summary.tune_interval)} on tune (95% CIs) at ${per_1k_usd:.4f} per 1K "
            f"instances; chosen by rule {summary.selection}: {summary.reason or '-'}. "
            + (carry[0].upper() + carry[1:] + ". " if carry else "")
            + f"{summary.trials} trials ({summary.pruned} pruned), paid ${summary.paid:.6f}, the cache saved "
            f"${summary.saved:.6f}" + ("; stopped by the optimization budget" if summary.stopped_by_budget else ""))


class TrialWriter:
    """The tune's side of trial_writer.py: trials go down its stdin, their run ids come back on a reader
    thread. Started in a session of its own, so Ctrl-C in the terminal does not reach it: every trial sent
    is written before it exits."""

    def __init__(self, process: subprocess.Popen, stderr):
        import threading

        self.process, self.stderr = process, stderr
        self.sent = self.acked = 0
        self.runs: dict[int, str] = {}
        self.errors: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, name="mlflow-trial-runs", daemon=True).start()

    @classmethod
    def start(cls, uri: str, experiment_id: str) -> "TrialWriter | None":
        stderr = tempfile.TemporaryFile(mode="w+")
        try:
            process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("trial_writer.py")), uri,
                                        str(experiment_id)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=stderr, text=True, start_new_session=True)
        except OSError:
            stderr.close()
            return None  # written in this process instead
        return cls(process, stderr)

    def send(self, trial: dict) -> None:
        self.process.stdin.write(json.dumps(trial) + "\n")
        self.process.stdin.flush()
        self.sent += 1

    def _read(self) -> None:
        for line in self.process.stdout:
            head, _, rest = line.strip().partition(" ")
            with self.changed:
                if head == "error":
                    self.errors.append(rest.partition(" ")[2])
                elif head:
                    self.runs[int(head)] = rest
                self.acked += 1
                self.changed.notify_all()
        with self.changed:
            self.acked = -1  # the process is gone
            self.changed.notify_all()

    def wait(self, runs: dict[int, str]) -> list[BaseException]:
        """Until every trial sent is written; their run ids go into `runs`; the failures, as exceptions."""
        with self.changed:
            self.changed.wait_for(lambda: self.acked >= self.sent or self.acked < 0)
            runs.update(self.runs)
            errors, self.errors = self.errors, []
            if self.acked < 0 and len(runs) < self.sent:
                self.stderr.seek(0)
                errors.append(f"the trial writer exited early: {self.stderr.read()[-2000:]}")
        return [RuntimeError(f"MLflow trial logging: {e}") for e in errors]

    def close(self) -> None:
        """Every trial is written by now (`wait`): the process is told to end and reaped on a thread of its
        own, so its interpreter's shutdown is not waited for."""
        import threading

        try:
            self.process.stdin.close()
        except OSError:
            pass

        def reap() -> None:
            self.process.wait()
            self.stderr.close()

        threading.Thread(target=reap, name="mlflow-trial-writer-exit", daemon=True).start()


SWEEP_RUN_ENV = "ENGINE_SWEEP_RUN"  # set by the sweep callback (engine.mlflow.sweep) for the jobs it runs
SWEEP_URI_ENV = "ENGINE_SWEEP_URI"
SWEEP_KEYS_ENV = "ENGINE_SWEEP_KEYS"  # the keys the sweep varies: a job's run name starts with them


def swept_first(overrides: list[str]) -> list[str]:
    """A job's overrides, those the running sweep varies first (each group sorted): what differs between the
    sweep's runs is what the runs table shows before it truncates a name."""
    swept = set(filter(None, os.environ.get(SWEEP_KEYS_ENV, "").split(",")))
    return sorted(overrides, key=lambda o: (o.split("=", 1)[0].lstrip("+~") not in swept, o))


def sweep_parent(uri: str) -> str | None:
    """The run of the sweep this process's jobs belong to, when it is in the same store."""
    run_id = os.environ.get(SWEEP_RUN_ENV)
    return run_id if run_id and os.environ.get(SWEEP_URI_ENV) == uri else None


class Tracker:
    """The MLflow side of one tune. Use `start`, `log_trial` per trial, then `finish` or `end(status)`."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        ensure_store(uri)  # a local store is made whole before the tune starts, never half-migrated
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.uri = uri
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location,
                                                                   tags=EXPERIMENT_TAGS)
            except self.mlflow.exceptions.MlflowException:  # made by a tune that started at the same moment
                found = self.client.get_experiment_by_name(experiment)
                if found is None:
                    raise
        if found is not None:
            self.experiment_id = found.experiment_id
        if found and not all(found.tags.get(k) for k in EXPERIMENT_TAGS):
            for key, value in EXPERIMENT_TAGS.items():
                self.client.set_experiment_tag(self.experiment_id, key, value)
        self.run_id: str | None = None
        self.space: dict | None = None
        self.trial_runs: dict[int, str] = {}  # trial number -> its child run
        self._logging: ThreadPoolExecutor | None = None  # logs trials off the tune's critical path
        self._queued: list = []
        # the process that writes trial runs (trial_writer.py); False: it could not start, trials are written here
        self._writer: TrialWriter | bool | None = None
        self.source: dict[str, str] = {}  # MLflow's standard tags, the same on the parent and its trials

    def start(self, params: dict, tags: dict, inputs: dict[str, list[dict]] | None = None,
              name: str | None = None, space: dict | None = None) -> str:
        """The parent run; with `space`, its readable text (param `search_space`, artifact search_space.yaml)
        and the trial names that say what each trial chose."""
        self.source = source_tags()
        self.close_stale_runs()
        tags = {**self.source, **{k: str(v) for k, v in tags.items() if v is not None}}
        tags["engine.kind"] = "tune"
        tags["engine.process"] = process_tag()
        sweep_run = sweep_parent(self.uri)
        if sweep_run:  # a job of a sweep: nested under the sweep's run (engine.mlflow.sweep)
            from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

            tags[MLFLOW_PARENT_RUN_ID] = sweep_run
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        self.run_id = run.info.run_id
        self.space = space
        if space is not None:
            params = {**params, "search_space": space_text(space)}
            self._submit(self.client.log_dict, self.run_id, readable_space(space), "search_space.yaml")
        self._submit(self._log, self.run_id, params=params)
        for context, points in (inputs or {}).items():  # off the critical path too: the tune starts at once
            self._submit(self._log_dataset, points, context, tags.get("task", "data"))
        return self.run_id

    def close_stale_runs(self) -> None:
        """Tunes of this experiment left RUNNING by a process that no longer exists on this machine (kill -9,
        a power cut) end KILLED, as MLflow users expect; a run of a live process, or of another machine, is
        left alone."""
        stale = self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING' and "
                                        "tags.`engine.kind` = 'tune'", max_results=200)
        for run in stale:
            tag = run.data.tags.get("engine.process")
            if tag and process_alive(tag) is False:
                self.client.set_tag(run.info.run_id, "mlflow.note.content",
                                    f"KILLED: its process ({tag}) ended without closing the run; marked when the "
                                    "next tune of this experiment started")
                self.client.set_terminated(run.info.run_id, "KILLED")

    def log_trial(self, trial: TrialRecord) -> None:
        """Queue the trial's child run for the tracker's logging thread, which hands it to the trial writer
        process: MLflow's calls (their CPU, and a round trip each on a tracking server) never hold up the tune;
        `finish` and `end` wait until every trial queued is written."""
        self._submit(self._log_trial, trial)

    def _submit(self, fn, *args, **kwargs) -> None:
        if self._logging is None:
            self._logging = ThreadPoolExecutor(1, thread_name_prefix="mlflow-log")  # one thread: in order
        self._queued.append(self._logging.submit(fn, *args, **kwargs))

    def drain(self, raise_errors: bool = True) -> None:
        """Wait until every queued trial is logged; the first failure is raised (or dropped, on the way out
        of a failed run, whose own error matters more)."""
        queued, self._queued = self._queued, []
        errors = [f.exception() for f in queued if f.exception() is not None]
        if self._logging is not None:
            self._logging.shutdown(wait=True)
            self._logging = None
        if self._writer:
            errors += self._writer.wait(self.trial_runs)
        if errors and raise_errors:
            raise errors[0]

    def _log_trial(self, trial: TrialRecord) -> None:
        """A nested child run over the trial's real start and end: its config as params, its numbers as
        metrics, named by what it chose; written by the trial writer process (or here, if it cannot start)."""
        message = self._trial_message(trial)
        if self._writer is None:
            self._writer = TrialWriter.start(self.uri, self.experiment_id) or False
        if self._writer:
            self._writer.send(message)
            return
        child = self.client.create_run(self.experiment_id, start_time=message["start_ms"], tags=message["tags"],
                                       run_name=message["name"])
        self._log(child.info.run_id, params=message["params"], metrics=message["metrics"], at_ms=message["end_ms"])
        self.client.set_terminated(child.info.run_id, "FINISHED", end_time=message["end_ms"])
        self.trial_runs[trial.number] = child.info.run_id

    def _trial_message(self, trial: TrialRecord) -> dict:
        """What a trial's child run holds, as plain data (what trial_writer.py reads)."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        record = trial.as_dict()
        now = time.time()
        start_ms = int((trial.started_at or now) * 1000)
        tags = {**self.source, MLFLOW_PARENT_RUN_ID: self.run_id, "engine.kind": "trial",
                "pruned": trial.pruned or "no"}
        if trial.error:
            tags["error"] = trial.error[:TAG_MAX]
        return {"number": trial.number, "name": trial_name(trial.number, trial.config, self.space), "tags": tags,
                "start_ms": start_ms, "end_ms": max(start_ms, int((trial.ended_at or now) * 1000)),
                "params": {k: redact_text(str(v))[:PARAM_MAX] for k, v in flatten(record["config"]).items()},
                "metrics": _metrics(self._trial_values(trial, record))}

    @staticmethod
    def _trial_values(trial: TrialRecord, record: dict) -> dict:
        values = {**record["metrics"], "pruned": float(bool(trial.pruned))}
        values.update({k: v for k, v in record.items()
                       if k not in ("config", "metrics", "scores", "pruned", "error", "trial", "started_at",
                                    "ended_at")})
        values.update(per_1k(values))
        return values

    def finish(self, best_config: dict, metrics: dict, trials: list[TrialRecord], metric: str, mode: str,
               extra_artifacts: list[Path] = (), best_trial: TrialRecord | None = None,
               note: str | None = None, items: dict[str, dict] | None = None) -> None:
        """The best config (artifacts, and params `best.*`), the best trial marked and linked, the metrics,
        the plot, the per-item tables (`items`: artifact path -> columns, engine.mlflow.items) and the one-line
        summary as the run's description; then FINISHED."""
        from .plots import cost_vs_metric

        self.drain()
        for path, table in (items or {}).items():
            if table and table.get("point"):
                self.log_table(path, table)

        self._log(self.run_id, params={f"best.{k}": v for k, v in public_view(best_config).items()},
                  metrics=metrics)
        self.client.log_dict(self.run_id, public_view(best_config), "best_config.json")
        self.client.log_dict(self.run_id, public_view(best_config), "best_config.yaml")
        best_run = self.trial_runs.get(best_trial.number) if best_trial is not None else None
        if best_run:
            self.client.set_tag(best_run, "best", "true")
            self.client.set_tag(self.run_id, "best_run_id", best_run)
            self.client.set_tag(self.run_id, "best_trial", trial_name(best_trial.number, best_trial.config,
                                                                      self.space))
        if note or best_run:
            link = f"best trial: [{trial_name(best_trial.number, best_trial.config, self.space)}]" \
                   f"(#/experiments/{self.experiment_id}/runs/{best_run})" if best_run else ""
            self.client.set_tag(self.run_id, "mlflow.note.content", "; ".join(filter(None, (note, link)))[:TAG_MAX])
        with tempfile.TemporaryDirectory() as tmp:
            plot = cost_vs_metric(trials, metric, mode, Path(tmp) / "cost_vs_metric.png", chosen=best_trial)
            self.client.log_artifact(self.run_id, str(plot))
        for path in extra_artifacts:
            if Path(path).exists():
                self.client.log_artifact(self.run_id, str(path))
        self.end("FINISHED")

    def log_table(self, path: str, table: dict[str, list]) -> None:
        """A table artifact (MLflow's JSON table format, shown as a table in the run's Artifacts tab)."""
        import pandas as pd

        with warnings.catch_warnings():  # pandas' notices about MLflow's own dtype checks
            warnings.simplefilter("ignore")
            self.client.log_table(self.run_id, pd.DataFrame(table), path)

    def ui_hint(self) -> str:
        """The command that opens the MLflow UI on this store, and the address of this run in it."""
        page = f"#/experiments/{self.experiment_id}/runs/{self.run_id}"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{page}"
        mlflow = Path(sys.executable).with_name("mlflow")
        command = os.path.relpath(mlflow) if mlflow.exists() and not os.path.relpath(mlflow).startswith("..") \
            else (str(mlflow) if mlflow.exists() else "mlflow")
        return f"{command} ui --backend-store-uri {self.uri} --port 5000, then open http://127.0.0.1:5000/{page}"

    def end(self, status: str, error: BaseException | None = None) -> None:
        """FINISHED, FAILED or KILLED: a run never stays RUNNING. A failure's message is the tag `error`
        (and the run's description), its traceback the artifact error.txt."""
        if not self.run_id:
            return
        self.drain(raise_errors=error is None)
        if error is not None:
            message = f"{type(error).__name__}: {error}".strip().rstrip(":")
            try:
                self.client.set_tag(self.run_id, "error", message[:TAG_MAX])
                self.client.set_tag(self.run_id, "mlflow.note.content", f"{status}: {message}"[:TAG_MAX])
                self.client.log_text(self.run_id, "".join(traceback.format_exception(error)), "error.txt")
            except Exception:  # noqa: BLE001 - the store may be what failed; the status below still matters
                pass
        self.client.set_terminated(self.run_id, status)
        if self._writer:
            self._writer.close()
        self._writer = None

    def _log(self, run_id: str, params: dict | None = None, metrics: dict | None = None,
             at_ms: int | None = None) -> None:
        from mlflow.entities import Metric, Param

        params = [Param(k, redact_text(str(v))[:PARAM_MAX])
                  for k, v in flatten(params or {}).items()]
        now = at_ms or int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(metrics or {}).items()]
        for i in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])

    def _log_dataset(self, points: list[dict], context: str, name: str) -> None:
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag

        frame = pd.DataFrame([{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in p.items()}
                              for p in points])
        with warnings.catch_warnings():  # "Inferred schema contains integer column(s)": true, and not ours
            warnings.simplefilter("ignore", UserWarning)
            dataset = self.mlflow.data.from_pandas(frame, name=f"{name}-{context}")
            entity = dataset._to_mlflow_entity()
        self.client.log_inputs(self.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])])
