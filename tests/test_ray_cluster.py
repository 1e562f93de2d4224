"""Trials on a Ray cluster of two nodes on this machine (`ray.cluster_utils.Cluster`: a head with 4 CPUs, on which
Ray would pack both trials in flight unless told to spread them, and a second node with 1; each has a custom
resource that tells it apart), with the engine pointed at the cluster's address as a user points it at
`ray start --head`: trials land on both nodes (the node ids Ray reports), the second node works on
a scratch cache and ships its answers to the driver's LMDB (a rerun on the driver pays nothing), and when the
second node dies mid-tune its trial is kept as possibly billed, the tune finishes on the head, and the budget
holds server-side."""
import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest
from flaml.tune import lograndint, randint

from engine.tuning import Tuner, TuneSpec
from engine.tuning.preflight import trial_worst_case
from engine.tuning.spec import RaySettings
from tests.support.fake_openai import landscape_responder
from tests.support.helpers import PRICE, ROOT, eval_func

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402 - only once Ray is known to be there

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="a node is killed through /proc")

DATA = [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(3, 7) for b in range(2, 5)]  # 12
BUDGET = 0.012
# The second node's raylet, hence its workers, run with OPENAI_ORG_ID set: the openai client sends it as the
# OpenAI-Organization header, so the fake server knows which node a request came from.
SECOND = "engine-second-node"


@contextlib.contextmanager
def environ(**values):
    """os.environ with `values` while a node starts (its raylet and its workers inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def kill_node(cluster, node) -> None:
    """The node dies as a machine does: every process started with its marker (raylet, agents and the workers
    the raylet forked) is SIGKILLed at once; then the Cluster forgets it."""
    marker = f"OPENAI_ORG_ID={SECOND}".encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass  # gone already, or not ours
    cluster.remove_node(node, allow_graceful=False)


def importable() -> str:
    """PYTHONPATH for the nodes' workers: they import eval_func from tests.support, as installed code."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="module")
def head():
    ray.shutdown()  # a local Ray an earlier test module left connected
    with environ(PYTHONPATH=importable()):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "resources": {"head": 1},
                                                                "include_dashboard": False})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def second(head):
    with environ(PYTHONPATH=importable(), OPENAI_ORG_ID=SECOND):
        node = head.add_node(num_cpus=1, resources={"second": 1})
    yield node
    if node in head.worker_nodes:
        kill_node(head, node)


def node_ids() -> dict[str, str]:
    """{"head": node id, "second": node id} as Ray reports its live nodes, by their custom resources."""
    return {name: n["NodeID"] for n in ray.nodes() if n["Alive"] for name in ("head", "second")
            if name in n["Resources"]}


def tuner(session, address: str | None) -> Tuner:
    spec = TuneSpec(DATA, "success", "max", eval_func, inference_budget=0.002, optimization_budget=BUDGET,
                    num_samples=-1, progress=False, trials=2,  # the same decisions on Ray and on the driver
                    ray=RaySettings(address=address, workers=2) if address else None,
                    space={"model": "fake-ignores-n", "prompt": ["{question}", "Think step by step. {question}"],
                           "max_tokens": lograndint(4, 16), "n": randint(1, 3)})
    return Tuner(spec, session.requester.for_run(), session.seed)


def test_trials_land_on_both_nodes_and_the_second_ships_its_answers_to_the_driver(fake_models, session, head,
                                                                                 second):
    fake_models.responder = landscape_responder
    fake_models.latency = 0.05
    on_ray = tuner(session, head.address)
    best, _ = on_ray.run()

    remote, nodes = on_ray._remote, node_ids()
    assert set(nodes) == {"head", "second"}
    assert set(remote.nodes_seen) == {nodes["head"], nodes["second"]}  # trials came back from both nodes
    # the second node's trials answered on a scratch cache and shipped it; the head's shared the driver's
    assert 0 < remote.shipped < len(fake_models.completions())
    billed = fake_models.billed(PRICE["prompt"], PRICE["completion"])
    assert 0 < billed <= BUDGET + 1e-12  # server-side
    assert abs(on_ray.guard.paid - billed) < 1e-9
    assert fake_models.paid_twice() == 0

    sent = len(fake_models.requests)
    again = tuner(session, None)  # on the driver alone, from its LMDB
    best_again, _ = again.run()
    assert len(fake_models.requests) == sent and again.guard.paid == 0
    assert best_again == best


def test_a_node_that_dies_mid_tune_leaves_its_trial_possibly_billed_and_the_tune_finishes(fake_models, session,
                                                                                          head, second):
    fake_models.latency = 0.05
    on_ray = tuner(session, head.address)
    killed, answered_there, seen_at_kill = threading.Event(), [], {}

    def responder(body: dict, choice: int) -> str:
        """The landscape; the second node's third request is billed here, and its node dies before the answer."""
        record = next(r for r in reversed(list(fake_models.requests)) if r["body"] is body)
        came_from = {k.lower(): v for k, v in record["headers"].items()}.get("openai-organization")
        if came_from == SECOND and choice == 0 and not killed.is_set():
            answered_there.append(record)
            if len(answered_there) == 3:
                seen_at_kill.update(on_ray._remote.nodes_seen)
                kill_node(head, second)
                killed.set()
        return landscape_responder(body, choice)

    fake_models.responder = responder
    on_ray.run()  # the tune finishes
    assert killed.is_set()
    fake_models.wait_idle()

    remote, head_id, second_id = on_ray._remote, node_ids()["head"], second.node_id
    lost = [t for t in on_ray.trials if t.number in remote.lost]
    assert lost and all(t.pruned == "error" and "possibly billed" in t.error for t in lost)
    worst = sum(trial_worst_case(t.config, on_ray.spec, on_ray.requester.catalog, on_ray.seed) for t in lost)
    assert on_ray.guard.unanswered == pytest.approx(worst) and on_ray.guard.unanswered_requests == len(lost)
    assert remote.nodes_seen[head_id] > seen_at_kill.get(head_id, 0)  # trials went on on the head
    assert remote.nodes_seen.get(second_id, 0) == seen_at_kill.get(second_id, 0)  # and nothing came from there

    billed = fake_models.billed(PRICE["prompt"], PRICE["completion"])
    assert billed <= BUDGET + 1e-12  # server-side
    # the lost trial's requests were billed and never reported: only its worst case, counted, covers them
    assert on_ray.guard.paid < billed <= on_ray.guard.paid + on_ray.guard.unanswered + 1e-12
    assert on_ray.guard.charged + on_ray.guard.unanswered <= BUDGET + 1e-12
