"""The LMDB response cache against a real LMDB environment, several processes at once included."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap

import lmdb
import pytest

from engine.requests.cache import CacheRoot, ResponseCache
from engine.core.errors import CacheError


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
        from engine.requests.cache import ResponseCache
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


def _filled(path, entries=2000):
    cache = ResponseCache(path)
    for i in range(entries):
        cache.put(b"k%05d" % i, {"i": i, "pad": "z" * 200})
    cache.close()
    return path / "data.mdb"


def test_a_cut_short_cache_file_is_refused_at_open_naming_it_not_a_sigbus(tmp_path):
    """A data.mdb shorter than LMDB's own record of it kills a reader with SIGBUS: found before any read."""
    data = _filled(tmp_path / "c")
    os.truncate(data, data.stat().st_size // 3)
    script = f"from engine.requests.cache import ResponseCache; c = ResponseCache({str(tmp_path / 'c')!r}); c.get(b'k00001')"
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == 1, f"rc {child.returncode}: {child.stderr[-500:]}"  # an exception, not a signal
    assert f"the response cache {data} is damaged" in child.stderr and "cut short" in child.stderr
    assert f"mv {tmp_path / 'c'} {tmp_path / 'c'}.damaged" in child.stderr


def test_damaged_pages_stop_with_the_file_named_not_a_raw_lmdb_error(tmp_path):
    data = _filled(tmp_path / "c")
    with open(data, "r+b") as f:  # random bytes over data pages
        f.seek(data.stat().st_size // 2)
        f.write(os.urandom(4096 * 4))
    cache = ResponseCache(tmp_path / "c")
    with pytest.raises(CacheError, match=r"the response cache .*data.mdb is damaged .*mv "):
        for i in range(2000):
            cache.get(b"k%05d" % i)


def test_a_cache_folder_deleted_mid_run_is_said_and_its_answers_kept_in_memory(tmp_path, caplog):
    import shutil

    cache = ResponseCache(tmp_path / "c")
    cache.put(b"before", {"i": 0})
    shutil.rmtree(tmp_path / "c")
    refused = cache.put(b"after", {"i": 1})
    assert refused and "was deleted or replaced during the run" in refused
    assert cache.get(b"after") == {"i": 1}  # still served for the rest of the run


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from tests.support.helpers import register_fake_models  # the repo root is on PYTHONPATH
    from engine import Completion, Session
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
    with Session(seed=41, cache_path=sys.argv[2]) as session:
        register_fake_models(session.catalog, sys.argv[1])
        Completion.create(model="fake-chat", prompt="warm up", max_tokens=5)  # the cache files exist now
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        for rounds in range(2):  # the second round must be served from memory
            texts = [Completion.extract_text(Completion.create(model="fake-chat", prompt="x" * 2000 + str(i),
                                                               max_tokens=5))[0] for i in range(30)]
        unkept = session.requester.caches.unkept
        print(len(texts), unkept.answers, f"{unkept.dollars:.9f}", flush=True)
""")


def test_a_full_disk_keeps_paid_answers_in_memory_and_says_what_was_not_kept(tmp_path):
    from tests.support.fake_openai import FakeOpenAI
    from tests.support.helpers import PRICE, child_env

    with FakeOpenAI() as fake:
        child = subprocess.run([sys.executable, "-c", FULL_DISK, fake.base_url, str(tmp_path / "cache")],
                               capture_output=True, text=True, timeout=240, env=child_env())
        assert child.returncode == 0, child.stderr[-2000:]
        texts, unkept, dollars = child.stdout.split()
        answered = [r for r in fake.requests if "usage" in r]
    assert int(texts) == 30 and len(answered) == 31  # each paid once: the second round came from memory
    assert int(unkept) > 0 and "the disk refused a write to the cache" in child.stderr
    billed_unkept = sum(r["usage"]["prompt_tokens"] * PRICE["prompt"] + r["usage"]["completion_tokens"]
                        * PRICE["completion"] for r in answered[-int(unkept):]) / 1000
    assert abs(float(dollars) - billed_unkept) < 1e-9  # the figure said is what those answers cost
