"""The job queue on a real SQLite file: atomic claims, several workers, SIGKILL, bad input."""

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, assert_user_error, run_cli
from media import flash_clip
from renderer.errors import UserError
from renderer.jobs.queue import Queue
from renderer.render.checkpoints import work_dir

TINY = ["-p", "preview", "--size", "64x36", "--set", "dream.octaves=1", "--set",
        "dream.steps=1", "--set", "flow.steps=1", "--set", "video.warmup=2"]


def worker(db, *extra):
    return subprocess.Popen([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                             "--root", ROOT, "--root", tempfile.gettempdir(), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_claims_follow_priority_time_and_dependencies(tmp_path):
    q = Queue(tmp_path / "q.db")
    low = q.add("render", ["a"], "/", priority=0)
    high = q.add("render", ["b"], "/", priority=5)
    later = q.add("render", ["c"], "/", priority=9, not_before=time.time() + 3600)
    child = q.add("render", ["d"], "/", priority=9, after=low)
    assert q.claim("w1", 30).id == high
    claimed = q.claim("w1", 30)
    assert claimed.id == low  # `later` waits for its time, `child` for `low`
    assert q.claim("w1", 30) is None
    q.finish(claimed, "done")
    assert q.claim("w1", 30).id == child
    assert q.get(later).state == "queued"


def test_expired_lease_is_taken_over_and_the_old_worker_loses_it(tmp_path):
    q = Queue(tmp_path / "q.db")
    job = q.add("render", ["a"], "/")
    dead = q.claim("dead", 0.01)
    assert dead.id == job
    time.sleep(0.05)
    taken = q.claim("alive", 30)
    assert taken.id == job and taken.attempts == 2 and taken.epoch == dead.epoch + 1
    assert not q.heartbeat(dead, 30, {})
    assert q.heartbeat(taken, 30, {"done": 3, "total": 10, "fps": 1.5})
    assert q.get(job).frames_done == 3


@pytest.mark.slow
def test_several_workers_run_every_job_exactly_once(tmp_path):
    db = tmp_path / "q.db"
    outputs = []
    for i in range(5):
        out = tmp_path / f"out{i}.mp4"
        outputs.append(out)
        r = run_cli("queue", "--db", db, "add", "render", ROOT / "samples/pan.mp4", "-o", out,
                    "--end", "0.5", *TINY)
        assert r.returncode == 0, r.stderr
    zoom = tmp_path / "zoom.mp4"
    r = run_cli("queue", "--db", db, "add", "zoom", "-o", zoom, "--seconds", "0.5", "--fps", "8",
                *TINY[2:], "--set", "zoom.steps=1")
    assert r.returncode == 0, r.stderr
    workers = [worker(db, "--drain", "--lease", "20") for _ in range(3)]
    for w in workers:
        w.wait(timeout=600)
    jobs = Queue(db).jobs()
    assert [j.state for j in jobs] == ["done"] * 6
    assert all(j.attempts == 1 for j in jobs)
    for j in jobs:
        assert open(j.log).read().count("--- attempt") == 1
    assert all(o.exists() for o in [*outputs, zoom])
    # every job, the zoom too, reported its frames to `dream queue list`
    assert all(j.frames_total and j.frames_done == j.frames_total and j.fps for j in jobs)
    assert jobs[-1].frames_total == 4


@pytest.mark.slow
def test_killed_worker_job_is_resumed_by_another(tmp_path):
    db = tmp_path / "q.db"
    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=5, size="96x64")
    args = [*TINY[:-6], "--set", "dream.octaves=1", "--set", "dream.steps=4", "--set",
            "flow.steps=4", "--set", "video.warmup=2", "--set", "video.checkpoint_every=4",
            "--set", "encode.codec=png", "--batch", "2"]
    assert run_cli("render", src, "-o", tmp_path / "ref", *args).returncode == 0
    assert run_cli("queue", "--db", db, "add", "render", src, "-o", tmp_path / "out",
                   *args).returncode == 0
    first = worker(db, "--lease", "3")
    checkpoint = work_dir(tmp_path / "out") / "checkpoint.json"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert Queue(db).get(1).state == "running"  # the dead worker still holds it
    time.sleep(3.5)  # until its lease runs out
    listed = run_cli("queue", "--db", db, "list")
    assert "stale" in listed.stdout and "takes the job over" in listed.stdout, listed.stdout
    second = worker(db, "--drain", "--lease", "3")
    second.wait(timeout=600)
    job = Queue(db).get(1)
    assert job.state == "done" and job.attempts == 2
    # the whole job's frames, not the last attempt's
    assert job.frames_done == job.frames_total == 125, (job.frames_done, job.frames_total)
    assert "done (2 attempts, resumed)" in run_cli("queue", "--db", db, "list").stdout
    assert "resuming from step" in open(job.log).read()
    ref = sorted((tmp_path / "ref").glob("frame_*.png"))
    out = sorted((tmp_path / "out").glob("frame_*.png"))
    assert [p.name for p in out] == [p.name for p in ref]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(out, ref))


def test_queue_bad_input(tmp_path):
    db = tmp_path / "q.db"
    assert_user_error(run_cli("queue", "--db", db, "show", "42"), "no job 42")
    assert_user_error(run_cli("queue", "--db", db, "add", "render", "x.mp4", "-o"),
                      "invalid render arguments")
    q = Queue(db)
    job = q.add("render", ["a"], "/")
    q.finish(q.claim("w", 30), "done")
    assert_user_error(run_cli("queue", "--db", db, "cancel", str(job)), "already done")
    assert_user_error(run_cli("queue", "--db", db, "retry", str(job)), "only failed")
    assert Queue(db).get(job).state == "done"


def test_corrupt_database_is_reported_and_left_alone(tmp_path):
    db = tmp_path / "q.db"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    assert_user_error(run_cli("queue", "--db", db, "list"), "damaged")
    assert db.read_bytes() == before


def test_locked_database_is_reported(tmp_path):
    db = tmp_path / "q.db"
    Queue(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = run_cli("queue", "--db", db, "add", "render", ROOT / "samples/pan.mp4", "-p",
                    "preview", "-o", tmp_path / "o.mp4", env={"DREAM_QUEUE_BUSY_MS": "300"})
        assert_user_error(r, "locked")
    finally:
        holder.execute("ROLLBACK")
    assert Queue(db).jobs() == []


def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import torch

    from renderer.render.checkpoints import Checkpoints, RenderState

    store = Checkpoints(tmp_path / "o.mp4", "fp")
    store.start(resume=False)
    store.save(RenderState(step=4), [["a.mkv"]])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="No space left"):
        store.save(RenderState(step=8), [["a.mkv", "b.mkv"]])
    monkeypatch.undo()
    state, chunks = store.load()
    assert state.step == 4 and chunks == [["a.mkv"]]
    assert sorted(p.name for p in store.folder.iterdir()) == [
        ".dream-work", "checkpoint.json", "state_00000004.pt"]  # no temporary file left


def test_the_worker_and_the_list_say_what_happened(tmp_path):
    """Issue 46 item 2: the worker printed only `job 1: failed`; a job queued after a failed
    one sat `queued`; a dead worker's job showed `running` with an ETA."""
    db = tmp_path / "q.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clip = flash_clip(elsewhere / "clip.mp4", seconds=1, size="64x36")
    r = run_cli("queue", "--db", db, "add", "render", clip, "-o", elsewhere / "o.mp4", *TINY)
    assert r.returncode == 0, r.stderr
    r = run_cli("queue", "--db", db, "add", "--after", "1", "render", clip, "-o",
                elsewhere / "p.mp4", *TINY)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    root.mkdir()
    w = subprocess.run([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                        "--root", str(root), "--drain"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert w.returncode == 0, w.stderr
    said = " ".join((w.stdout + w.stderr).split())
    assert "job 1: failed: refused:" in said and "outside the worker's folders" in said, said
    assert "--root" in said
    assert "job 2 stays queued: it runs after job 1, which failed" in said, said
    q = Queue(db)
    dead = q.add("render", ["a"], "/")
    claimed = q.claim("gone", 60)
    assert claimed.id == dead
    q.heartbeat(claimed, 60, {"done": 5, "total": 50, "fps": 2.0})
    q.db.execute("UPDATE jobs SET beat = beat - 30 WHERE id=?", (dead,))  # 30 s of silence
    listed = run_cli("queue", "--db", db, "list", "--json")
    status = {j["id"]: (j["status"], j["eta"]) for j in json.loads(listed.stdout)}
    assert status[1][0] == "failed"
    assert status[2] == ("blocked (job 1 failed)", None)
    assert status[dead] == ("stale (worker silent)", None)
    table = run_cli("queue", "--db", db, "list").stdout
    assert "blocked" in table and "stale" in table and "outside the worker's folders" in table
