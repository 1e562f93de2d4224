"""The LMDB response cache against a real LMDB environment, several processes at once included."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap

import lmdb
import pytest

from engine.cache import CacheRoot, ResponseCache
from engine.errors import CacheError


def _writer(path, worker, count):
    cache = ResponseCache(path)
    for i in range(count):
        cache.put(f"{worker}-{i}".encode(), {"worker": worker, "i": i, "pad": "x" * 200})


def test_put_get_roundtrip_and_miss(tmp_path):
    cache = ResponseCache(tmp_path / "c")
    assert cache.get(b"nope") is None
    value = {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 1}}
    cache.put(b"k", value)
    assert cache.get(b"k") == value
    assert len(cache) == 1


def test_several_processes_write_at_once_without_losing_any(tmp_path):
    path = str(tmp_path / "shared")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # spawned interpreters import the engine: slow on a loaded machine, not a failure
        assert p.exitcode == 0, f"writer exit code {p.exitcode}"
    cache = ResponseCache(path)
    assert len(cache) == 600
    assert cache.get(b"3-149")["i"] == 149


def test_map_grows_by_itself_when_full(tmp_path):
    cache = ResponseCache(tmp_path / "small", map_size=64 * 1024)
    for i in range(200):
        cache.put(str(i).encode(), {"pad": "y" * 2000, "i": i})
    assert len(cache) == 200
    assert cache.get(b"199")["i"] == 199


def test_corrupt_entry_is_a_miss_not_a_crash(tmp_path):
    path = tmp_path / "c"
    ResponseCache(path).close()
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"bad", b"\xff\x00 not json")
        txn.put(b"list", b"[1, 2]")
    env.close()
    cache = ResponseCache(path)
    assert cache.get(b"bad") is None
    assert cache.get(b"list") is None


def test_unusable_cache_dir_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match="cannot open the response cache at .*file"):
        ResponseCache(blocker / "41")


def test_clear_drops_every_entry(tmp_path):
    cache = ResponseCache(tmp_path / "c")
    for i in range(5):
        cache.put(bytes([i]), {"i": i})
    cache.clear()
    assert len(cache) == 0 and cache.get(b"\x01") is None


def test_committed_entry_survives_kill_9(tmp_path):
    path = tmp_path / "c"
    code = textwrap.dedent(f"""
        import sys, time
        from engine.cache import ResponseCache
        c = ResponseCache({str(path)!r})
        c.put(b"paid", {{"answer": 42}})
        print("committed", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "committed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ResponseCache(path).get(b"paid") == {"answer": 42}


def test_cache_root_separates_seeds(tmp_path):
    root = CacheRoot(tmp_path)
    root.for_seed(41).put(b"k", {"v": 41})
    assert root.for_seed(42).get(b"k") is None
    assert root.for_seed(41) is root.for_seed(41)
    assert (tmp_path / "41").is_dir() and (tmp_path / "42").is_dir()
