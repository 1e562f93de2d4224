"""The local MLflow store is absent or whole: a Ctrl-C while MLflow creates it never leaves a half-migrated
file that every later run rejects, and one left by an older version is moved aside and made again."""
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from engine.mlflow.store import _usable, ensure_store
from tests.support.helpers import wait_until

# Ctrl-C as a terminal delivers it, even when the tests run in a background job (which starts with SIGINT ignored)
MAKE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from engine.mlflow.store import ensure_store; ensure_store(sys.argv[1]); print('made', flush=True)")


def _creating(folder: Path, pid: int) -> list[Path]:
    """The temporary store this child is making (not its journal, not one an earlier child left)."""
    return [p for p in folder.glob(f".mlflow.db.creating-{pid}-*") if not p.name.endswith("-journal")]


def _size(paths: list[Path]) -> int:
    try:
        return max((p.stat().st_size for p in paths), default=0)
    except OSError:  # moved into place or removed meanwhile
        return 0


def test_a_store_is_absent_or_whole_whenever_its_creation_is_interrupted(tmp_path):
    """Ctrl-C lands at moments told by what the child has done to the folder, not after a delay (importing
    MLflow takes 3 s on one machine and 15 s on a loaded one): MLflow has begun migrating the temporary store,
    it is halfway there (by the size of a whole store), the store is in place."""
    whole = tmp_path / "whole" / "mlflow.db"
    ensure_store(f"sqlite:///{whole}")
    half = whole.stat().st_size // 2
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    moments = {
        "migrations begun": lambda pid: bool(_creating(tmp_path, pid)),
        "migrations halfway": lambda pid: _size(_creating(tmp_path, pid)) >= half,
        "store in place": lambda pid: db.exists(),
    }
    for moment, reached in moments.items():
        db.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-c", MAKE, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert wait_until(lambda: reached(child.pid) or child.poll() is not None, seconds=240)
        # the child may be gone once its store is in place; before that, Ctrl-C must land while it works
        assert child.poll() is None or moment == "store in place", f"the store was made before {moment!r}"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        if moment != "store in place":  # the Ctrl-C landed mid-creation and stopped it
            assert child.returncode != 0 and b"KeyboardInterrupt" in err, err[-2000:]
        assert not db.exists() or _usable(uri), f"a half-created store after a Ctrl-C at {moment!r}"
        assert not _creating(tmp_path, child.pid) or child.returncode != 0  # a clean exit leaves no temporary
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
