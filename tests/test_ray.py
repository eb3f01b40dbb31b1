"""Queued jobs on a local multi-node Ray cluster (127.0.0.1 only), including a lost node."""

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli
from media import flash_clip
from renderer.jobs import Queue

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ARGS = ["-p", "preview", "--size", "96x64", "--set", "dream.octaves=1", "--set",
        "dream.steps=4", "--set", "flow.steps=4", "--set", "video.warmup=2", "--set",
        "video.checkpoint_every=4", "--set", "encode.codec=png", "--batch", "2"]


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    yield c
    c.shutdown()


def driver(db, address, *extra):
    return subprocess.Popen([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                             "--ray", address, "--gpus-per-task", "0", "--lease", "10", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_jobs_spread_over_nodes_and_survive_a_lost_node(tmp_path, cluster):
    """Jobs need a 'render' resource that only worker nodes have; the node running the job is
    removed mid-render, a replacement joins, Ray retries the task and it resumes."""
    node = cluster.add_node(num_cpus=1, resources={"render": 1}, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    db = tmp_path / "q.db"
    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=5, size="96x64")
    # Ray runs one-CPU tasks with OMP_NUM_THREADS=1; the same thread count gives the same floats
    assert run_cli("render", src, "-o", tmp_path / "ref", *ARGS,
                   env={"OMP_NUM_THREADS": "1"}).returncode == 0
    assert run_cli("queue", "--db", db, "add", "render", src, "-o", tmp_path / "out",
                   *ARGS).returncode == 0
    proc = driver(db, cluster.address, "--drain", "--ray-resources", '{"render": 1}')
    checkpoint = tmp_path / ".out.parts" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), proc.stdout.read() if proc.poll() is not None else "timeout"
    cluster.remove_node(node)
    cluster.add_node(num_cpus=1, resources={"render": 1}, node_ip_address="127.0.0.1")
    out, _ = proc.communicate(timeout=600)
    job = Queue(db).get(1)
    assert job.state == "done", out
    log = open(job.log).read()
    assert log.count("--- ray task") == 2 and "resuming from step" in log
    ref = sorted((tmp_path / "ref").glob("frame_*.png"))
    got = sorted((tmp_path / "out").glob("frame_*.png"))
    assert [p.name for p in got] == [p.name for p in ref]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(got, ref))
