"""Queued jobs on a local multi-node Ray cluster (127.0.0.1 only): a render split over nodes,
including a lost node, and a zoom job run whole."""

import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, run_cli
from media import flash_clip
from renderer.jobs.queue import Queue
from renderer.render.plan import Part

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ARGS = ["-p", "preview", "--size", "96x64", "--set", "dream.octaves=1", "--set",
        "dream.steps=4", "--set", "flow.steps=4", "--set", "video.warmup=2", "--set",
        "video.checkpoint_every=4", "--set", "encode.codec=png", "--batch", "1"]
ZOOM = ["-p", "zoom-classic", "--size", "64x48", "--set", "dream.octaves=1", "--set",
        "dream.steps=2"]


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    yield c
    c.shutdown()


def driver(db, address, *extra):
    return subprocess.Popen([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                             "--ray", address, "--gpus-per-task", "0", "--lease", "10",
                             "--root", ROOT, "--root", tempfile.gettempdir(), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_split_render_survives_a_lost_node_and_zoom_runs_whole(tmp_path, cluster):
    """A render job split over two worker nodes (tasks need a 'render' resource only they
    have): once both parts have checkpointed, both nodes are removed (the part that started
    last is surely mid-render), replacements join, Ray retries the parts and they resume; the
    joined frames equal the same parts rendered here, and the job's row shows the parts'
    progress. A second render is cancelled while it runs; a zoom job runs whole."""
    nodes = [cluster.add_node(num_cpus=1, resources={"render": 1}, node_ip_address="127.0.0.1")
             for _ in range(2)]
    cluster.wait_for_nodes()
    db = tmp_path / "q.db"
    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=5, size="96x64")
    # Ray runs one-CPU tasks with OMP_NUM_THREADS=1; the same thread count gives the same floats
    one_thread = {"OMP_NUM_THREADS": "1"}
    for part in ("--shard", "1/2"), ("--shard", "2/2"), ("--assemble", "2"):
        assert run_cli("render", src, "-o", tmp_path / "ref", *ARGS, *part,
                       env=one_thread).returncode == 0
    assert run_cli("queue", "--db", db, "add", "render", src, "-o", tmp_path / "out",
                   *ARGS).returncode == 0
    assert run_cli("queue", "--db", db, "add", "render", src, "-o", tmp_path / "out2",
                   *ARGS).returncode == 0
    assert run_cli("queue", "--db", db, "add", "zoom", "-o", tmp_path / "zoom.mp4",
                   "--seconds", "24", "--fps", "8", *ZOOM).returncode == 0
    proc = driver(db, cluster.address, "--drain", "--ray-resources", '{"render": 1}')
    checkpoints = [Part(k, 2).folder(tmp_path / "out") / "checkpoint.json" for k in (0, 1)]
    deadline = time.time() + 300
    while not all(c.exists() for c in checkpoints) and time.time() < deadline:
        time.sleep(0.05)
    assert all(c.exists() for c in checkpoints), (
        proc.stdout.read() if proc.poll() is not None else "timeout")
    for node in nodes:
        cluster.remove_node(node)
    for node in nodes:
        cluster.add_node(num_cpus=1, resources={"render": 1}, node_ip_address="127.0.0.1")

    # job 2 holds both nodes; cancelled while it renders, its tasks must stop at once (the
    # driver lives on: the zoom job waits for the nodes)
    progress = db.parent / "logs" / "job_2.part1.progress.json"
    while not progress.exists() and proc.poll() is None and time.time() < deadline + 300:
        time.sleep(0.05)
    assert run_cli("queue", "--db", db, "cancel", "2").returncode == 0
    time.sleep(4)  # the driver's heartbeat notices within a second, its loop within two
    reports = sorted(progress.parent.glob("job_2.part*.progress.json"))
    stopped = [p.read_text() for p in reports]
    time.sleep(3)  # a render still running would report within a second
    assert [p.read_text() for p in reports] == stopped and proc.poll() is None

    out, _ = proc.communicate(timeout=600)
    render, cancelled, zoom = (Queue(db).get(k) for k in (1, 2, 3))
    assert render.state == "done" and zoom.state == "done", out
    assert cancelled.state == "cancelled" and "job 2: cancelled" in out, out
    assert not (tmp_path / "out2").exists()
    assert "job 1: dispatched to Ray in 2 parts" in out
    assert render.frames_total == 125 - 2 and render.frames_done > 0  # 2 hand-over frames
    log = open(render.log).read()
    assert log.count("(part 1/2)") + log.count("(part 2/2)") in (3, 4), log
    assert log.count("(assemble)") == 1 and "resuming from step" in log
    ref = sorted((tmp_path / "ref").glob("frame_*.png"))
    got = sorted((tmp_path / "out").glob("frame_*.png"))
    assert len(ref) == 125 and [p.name for p in got] == [p.name for p in ref]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(got, ref))
    assert "(zoom)" in open(zoom.log).read() and (tmp_path / "zoom.mp4").stat().st_size > 0
