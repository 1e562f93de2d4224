"""Screenshots of what a team sees in the MLflow UI after a sweep and a promotion, taken in headless Chromium.

    python -m tools.mlflow_screenshots [OUT_DIR]        (from the repo root; default: screenshots/)

Runs a two-job sweep (`budget.optimization=0.01,0.02`) on the loopback fake OpenAI server
(tests/support/fake_openai.py, nothing paid) into a fresh SQLite store, promotes the sweep's winner
(`engine.promote sweep=last`), starts `mlflow ui` on that store, and saves:
runs.png (the runs list: the sweep's run, its jobs nested under it), jobs.png (the sweep's jobs compared, named by
what the sweep varies first), sweep.png (the sweep's run page: the winner, its link, config, test metric with
interval and $ per 1K instances), parent.png (a tune's run page: description, best.* params, tags), trial.png
(the best trial: best=true, its real duration), items.png (the best trial's per-item table, items/best_trial.json),
compare.png (the compare view of the trials), model.png (the registered version: its config and figures),
prompt.png (the Prompt Registry: the version under the alias, its template and model_config).
Needs `chromium-headless-shell` or `chromium` on the PATH (Debian: apt-get install chromium-headless-shell).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.fake_openai import FakeOpenAI


def chromium() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no headless Chromium on the PATH: apt-get install chromium-headless-shell")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine(args: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def shoot(browser: str, url: str, path: Path, size=(1600, 1000)) -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=20000",
                    f"--screenshot={path}", url], capture_output=True, timeout=120, check=True)
    print(f"{path}  <- {url}")


def main(out: Path) -> None:
    browser = chromium()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="engine-ui-"))
    uri = f"sqlite:///{work}/mlflow.db"
    env = {"MLFLOW_TRACKING_URI": uri, "OPENAI_API_KEY": "sk-test-screenshots"}
    with FakeOpenAI() as fake:
        engine(["engine.tune", "-m", "budget.optimization=0.01,0.02", "model=gpt-4o-mini",
                f"model.base_url={fake.base_url}", "task.tune_size=8", "task.test_size=8", "budget.num_samples=6",
                "progress=false"], work, env)
    engine(["engine.promote", "sweep=last"], work, env)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("arithmetic").experiment_id
    runs = client.search_runs([experiment], order_by=["attributes.start_time DESC"])
    sweep = next(r for r in runs if r.data.tags.get("engine.kind") == "sweep")
    parent = next(r for r in runs if r.info.run_id == sweep.data.tags["winner_run_id"])
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    best = next(r for r in trials if r.data.tags.get("best") == "true")
    version = client.get_model_version_by_alias("arithmetic-gpt-4o-mini", "production")
    prompt_name, prompt_version = version.tags["prompt"].removeprefix("prompts:/").split("/")

    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    ui = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
                          cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                          env={**os.environ, "PATH": f"{mlflow.parent}:{os.environ.get('PATH', '')}"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or ui.poll() is not None:
                    raise SystemExit("mlflow ui did not start")
                time.sleep(0.5)
        compare = urllib.parse.quote(json.dumps([t.info.run_id for t in trials]))
        jobs = urllib.parse.quote(json.dumps([r.info.run_id for r in runs
                                              if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]))
        shots = {
            "runs.png": f"{base}/#/experiments/{experiment}/runs",
            "jobs.png": f"{base}/#/compare-runs?runs={jobs}&experiments=%5B%22{experiment}%22%5D",
            "sweep.png": f"{base}/#/experiments/{experiment}/runs/{sweep.info.run_id}",
            "parent.png": f"{base}/#/experiments/{experiment}/runs/{parent.info.run_id}",
            "trial.png": f"{base}/#/experiments/{experiment}/runs/{best.info.run_id}",
            "items.png": f"{base}/#/experiments/{experiment}/runs/{parent.info.run_id}/artifacts/items/best_trial.json",
            "prompt.png": f"{base}/#/prompts/{prompt_name}?version={prompt_version}",
            "compare.png": f"{base}/#/compare-runs?runs={compare}&experiments=%5B%22{experiment}%22%5D",
            "model.png": f"{base}/#/models/{version.name}/versions/{version.version}",
        }
        for name, url in shots.items():
            # wide: MLflow 3.17 keeps its Assistant panel open on the right
            shoot(browser, url, out / name, (2000, 1400) if name in ("parent.png", "compare.png", "sweep.png", "jobs.png")
                  else (2000, 1000))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the UI server and its workers, by its own group id
        ui.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("screenshots"))
