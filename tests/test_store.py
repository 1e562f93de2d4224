"""The local MLflow store is absent or whole: a Ctrl-C while MLflow creates it never leaves a half-migrated
file that every later run rejects, and one left by an older version is moved aside and made again."""
import signal
import sqlite3
import subprocess
import sys
import time

from engine.store import _usable, ensure_store

MAKE = "import sys; from engine.store import ensure_store; ensure_store(sys.argv[1]); print('made', flush=True)"


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
