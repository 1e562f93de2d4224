"""What a team runs: PostgreSQL (the machine's initdb/pg_ctl) behind `mlflow server` on a loopback port. A tune
and a promotion go to it through MLFLOW_TRACKING_URI alone, and the runs and the alias read back from it.
Skipped, saying what is missing, without PostgreSQL's binaries or the `server` extra (psycopg)."""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.support.helpers import free_port, wait_until
from tests.support.fake_openai import FakeOpenAI

MISSING = [name for name in ("initdb", "pg_ctl", "postgres") if not shutil.which(name)]
try:
    import psycopg  # noqa: F401 - the driver mlflow server needs: pip install engine[server]
except ImportError:
    MISSING.append("psycopg (pip install 'engine[server]')")

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"a team server needs {', '.join(MISSING)}")


def as_postgres(command: list[str], folder: Path) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user, who owns its folder."""
    if os.geteuid() != 0:
        return command
    user = pwd.getpwnam("postgres")
    os.chown(folder, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--", *command]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except OSError:
            assert process.poll() is None, f"the server exited: {process.stderr.read()[-2000:]}"
            return False

    assert wait_until(answers, seconds, every=0.5), f"{url} did not answer in {seconds} s"


@pytest.fixture
def team_server(tmp_path):
    """`mlflow server` on PostgreSQL; yields its URL."""
    # as root, PostgreSQL's folders are the postgres user's, outside pytest's private (0700) tmp_path
    base = Path(tempfile.mkdtemp(prefix="engine-pg-")) if os.geteuid() == 0 else tmp_path
    base.chmod(0o755)
    pg, socket_dir = base / "pgdata", base / "pgsock"
    pg.mkdir()
    socket_dir.mkdir()
    as_postgres([], socket_dir)
    init = subprocess.run(as_postgres(["initdb", "-D", str(pg), "-U", "postgres", "--auth=trust"], pg),
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr[-2000:]
    port = free_port()
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"
    start = subprocess.run(as_postgres(["pg_ctl", "-D", str(pg), "-o", options, "-l", str(pg / "log"), "-w",
                                        "start"], pg), capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr[-2000:] + start.stdout[-2000:]
    server = None
    try:
        url_port = free_port()
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
        server = subprocess.Popen([mlflow, "server", "--backend-store-uri",
                                   f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                                   "--artifacts-destination", str(tmp_path / "artifacts"),
                                   "--host", "127.0.0.1", "--port", str(url_port), "--workers", "1"],
                                  env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        url = f"http://127.0.0.1:{url_port}"
        wait_for(f"{url}/health", server)
        yield url
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, by its group id
            server.wait(30)
        subprocess.run(as_postgres(["pg_ctl", "-D", str(pg), "-m", "fast", "stop"], pg), capture_output=True,
                       timeout=60)
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def engine(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600)


def test_a_tune_and_a_promotion_against_a_postgresql_backed_mlflow_server(team_server, tmp_path):
    from mlflow.tracking import MlflowClient

    work = tmp_path / "work"
    work.mkdir()
    env = {"MLFLOW_TRACKING_URI": team_server, "OPENAI_API_KEY": "sk-test-team"}
    with FakeOpenAI() as fake:
        tune = engine("engine.tune", "model=gpt-4o-mini", f"model.base_url={fake.base_url}", "task.tune_size=4",
                      "task.test_size=4", "budget.optimization=0.01", "budget.num_samples=2", "search=greedy",
                      "progress=false", cwd=work, env=env)
    assert tune.returncode == 0, tune.stderr[-3000:]
    assert "View run" not in tune.stdout + tune.stderr and team_server in tune.stdout  # the summary's link
    promoted = engine("engine.promote", cwd=work, env=env)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert not (work / "mlflow.db").exists() and not (work / "mlartifacts").exists()  # all on the server
    client = MlflowClient(team_server, team_server)
    experiment = client.get_experiment_by_name("arithmetic")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("engine.kind") == "tune")
    trials = [r for r in runs if r.data.tags.get("engine.kind") == "trial"]
    assert parent.info.status == "FINISHED" and len(trials) == 2
    assert parent.info.run_name.startswith("budget.num_samples=2") and parent.info.run_name.endswith(
        " · arithmetic · gpt-4o-mini")
    assert sum(r.data.tags.get("best") == "true" for r in trials) == 1
    version = client.get_model_version_by_alias("arithmetic-gpt-4o-mini", "production")
    assert version.run_id == parent.info.run_id and version.tags["input_fields"]
    config = json.loads(Path(client.download_artifacts(parent.info.run_id, "best_config.json", str(tmp_path)))
                        .read_text())
    assert config["model"] == "gpt-4o-mini"
