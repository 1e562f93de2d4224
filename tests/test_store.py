"""The local MLflow store is absent or whole: a Ctrl-C while MLflow creates it never leaves a half-migrated
file that every later run rejects, and one left by an older version is moved aside and made again."""
import signal
import sqlite3
import subprocess
import sys
import time

from engine.mlflow.store import _usable, ensure_store

MAKE = "import sys; from engine.mlflow.store import ensure_store; ensure_store(sys.argv[1]); print('made', flush=True)"


def test_a_store_is_absent_or_whole_whenever_its_creation_is_interrupted(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    for delay in (3.0, 4.5, 6.0):  # importing MLflow takes about 3 s here, its migrations about 2 s more
        db.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-c", MAKE, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=60)
        assert not db.exists() or _usable(uri), f"a half-created store after a Ctrl-C at {delay} s"
        assert not list(tmp_path.glob(".mlflow.db.creating-*")) or child.returncode != 0
    ensure_store(uri)
    assert _usable(uri) and not list(tmp_path.glob(".mlflow.db.creating-*"))


def test_a_store_an_older_version_left_half_created_is_moved_aside_and_made_again(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    ensure_store(uri)
    with sqlite3.connect(db) as conn:  # what an interrupted migration leaves: a schema MLflow cannot use
        conn.execute("UPDATE alembic_version SET version_num = '0000halfway'")
    assert not _usable(uri)
    ensure_store(uri)
    assert _usable(uri)
    kept = list(tmp_path.glob("mlflow.db.broken-*"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0


TRACK = """
import sys, mlflow.store.tracking.sqlalchemy_store
from engine.mlflow.tracking import Tracker
print("ready", flush=True)
sys.stdin.readline()  # the go: every process starts the store at the same moment
t = Tracker(sys.argv[1], "capitals")
run = t.client.create_run(t.experiment_id)
t.client.log_metric(run.info.run_id, "x", 1.0)
print(t.experiment_id, flush=True)
"""


def test_tunes_starting_together_in_a_fresh_folder_share_one_store_and_one_experiment(tmp_path):
    """Each start makes the store and the experiment if missing: all must come up, on the same experiment."""
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        children = [subprocess.Popen([sys.executable, "-c", TRACK, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120) for child in children]
        for child, (out, err) in zip(children, outputs):
            assert child.returncode == 0, err[-2000:]
        assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, not one each
        assert not list(folder.glob(".mlflow.db.creating-*"))
