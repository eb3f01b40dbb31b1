"""Hostile and unlucky input: nothing we did not write is deleted, no file runs code, a queued
job runs once, faults are reported (never called success), and what a user can fix exits 2
with one line. Each case asserts the exit code, the message, and what is left on disk."""

import json
import os
import pickle
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, assert_user_error, run_cli
from media import flash_clip
from renderer.jobs.queue import Queue
from renderer.render.checkpoints import work_dir
from renderer.render.plan import Part
from renderer.outputs import OutputLock

FAST = ["-p", "preview", "--size", "64x36", "--set", "dream.octaves=1", "--set", "dream.steps=0",
        "--set", "flow.steps=0", "--set", "video.warmup=2"]
PNG = [*FAST, "--set", "encode.codec=png"]
IMAGE = ROOT / "samples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return flash_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1, flash=0.5,
                      size="64x36")


def tree(folder):
    """Every path under `folder` with its bytes: what must survive a refused command."""
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------- 1. never delete what we did not write
@pytest.mark.slow
def test_png_overwrite_of_a_folder_we_did_not_write_deletes_nothing(tmp_path, clip):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    r = run_cli("render", "clip.mp4", "-o", ".", "--overwrite", *PNG, cwd=tmp_path)
    assert_user_error(r, "did not write")
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "keep.png").write_bytes(b"x")
    before = tree(tmp_path)
    r = run_cli("render", "clip.mp4", "-o", "frames", "--overwrite", *PNG, cwd=tmp_path)
    assert_user_error(r, "did not write", "keep.png")
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_png_overwrite_replaces_exactly_our_own_frames(tmp_path, clip):
    out = tmp_path / "frames"
    assert run_cli("render", clip, "-o", out, *PNG).returncode == 0
    first = sorted(p.name for p in out.iterdir())
    assert "frame_000000.png" in first and ".dream-output.json" in first
    r = run_cli("render", clip, "-o", out, "--overwrite", *PNG, "--end", "0.5")
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.png"))) < len([n for n in first if n.endswith(".png")])
    (out / "user.txt").write_text("added later")
    assert_user_error(run_cli("render", clip, "-o", out, "--overwrite", *PNG), "user.txt")
    assert (out / "user.txt").read_text() == "added later"


@pytest.mark.slow
def test_png_output_onto_a_regular_file_is_refused(tmp_path, clip):
    target = tmp_path / "frames"
    target.write_text("a file")
    assert_user_error(run_cli("render", clip, "-o", target, "--overwrite", *PNG), "is a file")
    assert target.read_text() == "a file"


@pytest.mark.slow
@pytest.mark.parametrize("link", ["same", "hardlink", "symlink"])
def test_output_is_never_an_input(tmp_path, clip, link):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(IMAGE.read_bytes())
    video = tmp_path / "x.mp4"
    video.write_bytes(clip.read_bytes())
    photo_out, video_out = photo, video
    if link != "same":
        photo_out, video_out = tmp_path / "q.jpg", tmp_path / "y.mp4"
        make = os.link if link == "hardlink" else os.symlink
        make(photo, photo_out)
        make(video, video_out)
    before = tree(tmp_path)
    assert_user_error(run_cli("image", photo, "-o", photo_out, "--overwrite", *FAST[:2]),
                      "is the input")
    assert_user_error(run_cli("render", video, "-o", video_out, "--overwrite", *FAST),
                      "is the input")
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_outputs_get_the_users_umask(tmp_path):
    out = tmp_path / "o.png"
    r = run_cli("image", IMAGE, "-o", out, "-p", "preview", "--size", "32x32", "--set",
                "dream.steps=0")
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def work_folder(tmp_path, checkpoint: str):
    """An output path and its render work folder, holding `checkpoint` as checkpoint.json."""
    parts = work_dir(tmp_path / "o.mp4")
    parts.mkdir()
    (parts / ".dream-work").touch()
    (parts / "checkpoint.json").write_text(checkpoint)
    return tmp_path / "o.mp4", parts


def test_a_second_render_to_the_same_output_is_refused(tmp_path, clip):
    out, parts = work_folder(tmp_path, "the first render's")
    with OutputLock(out):
        r = run_cli("render", clip, "-o", out, *FAST)
    assert_user_error(r, "another render is writing", f"pid {os.getpid()}")
    assert (parts / "checkpoint.json").read_text() == "the first render's"
    assert not out.exists()


# ---------------------------------------------------------------- 2. no file runs code
class Planted:
    """Unpickling this runs a command that leaves a file behind."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.slow
def test_a_planted_checkpoint_never_runs(tmp_path, clip):
    out = tmp_path / "o.mp4"
    parts = work_dir(out)
    parts.mkdir()
    sentinel = tmp_path / "pwned"
    (parts / "checkpoint.pt").write_bytes(pickle.dumps(Planted(sentinel)))
    assert_user_error(run_cli("render", clip, "-o", out, *FAST, "--resume"), "older version")
    (parts / "state_00000002.pt").write_bytes(pickle.dumps(Planted(sentinel)))
    (parts / "checkpoint.json").write_text(json.dumps({
        "fingerprint": "someone else's", "step": 2, "chunks": [],
        "state": f"{parts.name}/state_00000002.pt", "sha256": {}}))
    assert_user_error(run_cli("render", clip, "-o", out, *FAST, "--resume"), "different render")
    assert not sentinel.exists()


@pytest.mark.slow
def test_damaged_checkpoint_is_named_and_retry_fresh_drops_it(tmp_path, clip):
    out, _ = work_folder(tmp_path, "{garbage")
    assert_user_error(run_cli("render", clip, "-o", out, *FAST, "--resume"),
                      "checkpoint of", "is damaged", "without --resume")
    db = tmp_path / "q.db"
    assert run_cli("queue", "--db", db, "add", "render", clip, "-o", out, *FAST,
                   cwd=tmp_path).returncode == 0
    worker = [sys.executable, "-m", "renderer.cli", "worker", "--db", str(db), "--drain",
              "--root", str(tmp_path), "--root", str(clip.parent)]
    subprocess.run(worker, cwd=ROOT, capture_output=True, timeout=300)
    assert Queue(db).get(1).state == "failed" and "damaged" in Queue(db).get(1).error
    assert run_cli("queue", "--db", db, "retry", "1", "--fresh").returncode == 0
    subprocess.run(worker, cwd=ROOT, capture_output=True, timeout=300)
    assert Queue(db).get(1).state == "done" and out.stat().st_size > 0


@pytest.mark.slow
def test_a_truncated_frame_in_a_checkpoint_is_refused(tmp_path, clip):
    out = tmp_path / "frames"
    parts = work_dir(out)
    args = [*PNG, "--set", "video.checkpoint_every=1", "--batch", "1", "--set", "dream.steps=2"]
    proc = subprocess.Popen([sys.executable, "-m", "renderer.cli", "render", str(clip), "-o",
                             str(out), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    frames = []
    deadline = time.time() + 120
    while not frames and time.time() < deadline and proc.poll() is None:
        try:
            sums = json.loads((parts / "checkpoint.json").read_text())["sha256"]
            frames = [name for name in sums if name.endswith(".png")]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert frames, "no checkpoint with frames was written"
    victim = tmp_path / frames[0]
    victim.write_bytes(victim.read_bytes()[:20])
    assert_user_error(run_cli("render", clip, "-o", out, *args, "--resume"), "is damaged",
                      frames[0].rsplit("/", 1)[-1])
    assert not out.exists()


def test_model_weights_never_unpickle(tmp_path):
    sentinel = tmp_path / "pwned"
    weights = tmp_path / "w.pth"
    weights.write_bytes(pickle.dumps(Planted(sentinel)))
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {{name: resnet50, weights: '{weights}'}}\n")
    assert_user_error(run_cli("image", IMAGE, "-p", preset, "-o", tmp_path / "o.png"),
                      "could not be read")
    assert not sentinel.exists()


def _insert_job(db, args, cwd):
    """A row written straight into the database, as anyone who can write the file could."""
    Queue(db)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO jobs (kind, args, cwd, created) VALUES ('render', ?, ?, ?)",
                (args if isinstance(args, str) else json.dumps(args), str(cwd), time.time()))
    con.commit()
    con.close()


def test_worker_refuses_jobs_that_name_binaries_or_foreign_paths(tmp_path, clip):
    db = tmp_path / "q.db"
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {sentinel}\n")
    evil.chmod(0o755)
    preset = tmp_path / "evil.yaml"
    preset.write_text(f"extends: preview\nencode: {{ffmpeg: '{evil}'}}\n")
    _insert_job(db, [str(clip), "-o", str(tmp_path / "a.mp4"), *FAST, "--set",
                     f"encode.ffmpeg={evil}"], tmp_path)
    _insert_job(db, [str(clip), "-o", str(tmp_path / "b.mp4"), "-p", str(preset)], tmp_path)
    _insert_job(db, [str(clip), "-o", "/root/c.mp4", *FAST], tmp_path)
    _insert_job(db, "{not json", tmp_path)
    r = subprocess.run([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                        "--drain", "--root", str(tmp_path), "--root", str(clip.parent)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = Queue(db).jobs()
    assert [j.state for j in jobs] == ["failed"] * 4
    assert "ffmpeg binary" in jobs[0].error and "ffmpeg binary" in jobs[1].error
    assert "outside the worker's folders" in jobs[2].error
    assert "JSON" in jobs[3].error
    assert not sentinel.exists()
    listed = run_cli("queue", "--db", db, "list")
    assert listed.returncode == 0 and "(damaged)" in listed.stdout


def test_queue_logs_reads_only_the_queues_own_log(tmp_path):
    db = tmp_path / "q.db"
    secret = tmp_path / "secret.txt"
    secret.write_text("do not print me")
    _insert_job(db, ["x"], tmp_path)
    con = sqlite3.connect(db)
    con.execute("UPDATE jobs SET log=?", (str(secret),))
    con.commit()
    r = run_cli("queue", "--db", db, "logs", "1")
    assert_user_error(r, "no log yet")
    assert "do not print me" not in r.stdout


def test_hostile_presets_fail_fast(tmp_path):
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    (tmp_path / "laughs.yaml").write_text("\n".join(laughs) + "\n")
    (tmp_path / "big.yaml").write_text("description: '" + "x" * (2 << 20) + "'\n")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    for name, needle in (("laughs", "aliases"), ("big", "larger than"), ("deep", "nested")):
        started = time.time()
        assert_user_error(run_cli("presets", "show", tmp_path / f"{name}.yaml"), needle)
        assert time.time() - started < 30
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: ./b.yaml\n")
    b.write_text(f"extends: {a}\n")
    assert_user_error(run_cli("presets", "show", a), "cycle")


def test_a_broken_user_preset_does_not_break_the_list(tmp_path):
    user = tmp_path / "dream" / "presets"
    user.mkdir(parents=True)
    (user / "broken.yaml").write_text("dream: {octaves: many}\n")
    (user / "mine.yaml").write_text("description: my own\n")
    r = run_cli("presets", "list", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "broken.yaml" in r.stderr and "mine" in r.stdout


# ---------------------------------------------------------------- 3. a queued job runs once
@pytest.mark.slow
def test_a_render_whose_lease_was_taken_over_writes_nothing(tmp_path, clip):
    db = tmp_path / "q.db"
    q = Queue(db)
    q.add("render", ["x"], str(tmp_path))
    stalled = q.claim("stalled", 0.01)
    time.sleep(0.05)
    assert q.claim("other", 30).epoch == stalled.epoch + 1
    out = tmp_path / "o.mp4"
    fence = json.dumps([str(db), stalled.id, stalled.epoch])
    r = run_cli("render", clip, "-o", out, *FAST, env={"DREAM_JOB_FENCE": fence})
    assert r.returncode == 1, r.stderr
    assert "taken over by another worker" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_worker_survives_job_faults_and_a_busy_database(tmp_path, clip):
    db = tmp_path / "q.db"
    gone = tmp_path / "gone"
    gone.mkdir()
    q = Queue(db)
    q.add("render", [str(clip), "-o", str(gone / "a.mp4"), *FAST], str(gone))
    q.add("render", [str(clip), "-o", str(tmp_path / "b.mp4"), *FAST], str(tmp_path))
    gone.rmdir()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                             "--drain", "--root", str(tmp_path), "--root", str(clip.parent)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, DREAM_QUEUE_BUSY_MS="200"))
    time.sleep(4)  # locked for longer than the worker's busy timeout, many times over
    holder.execute("ROLLBACK")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in out, out
    first, second = Queue(db).jobs()
    assert first.state == "failed" and "cannot start" in first.error
    assert second.state == "done"


def test_worker_stops_with_one_line_on_a_damaged_database(tmp_path):
    db = tmp_path / "q.db"
    Queue(db).add("render", ["x"], str(tmp_path))
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"q.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(bytes(data))
    r = run_cli("worker", "--db", db, "--drain")
    assert_user_error(r, "damaged")


def test_a_job_taken_over_too_often_fails(tmp_path):
    q = Queue(tmp_path / "q.db")
    job = q.add("render", ["x"], str(tmp_path))
    for _ in range(3):
        assert q.claim("dies", 0.01).id == job
        time.sleep(0.03)
    assert q.claim("next", 30) is None
    assert q.get(job).state == "failed" and "gave up after 3 attempts" in q.get(job).error


@pytest.mark.parametrize("args, needle", [
    (["worker", "--lease", "nan"], "--lease"),
    (["queue", "add", "--priority", "100000000000000000000", "render", "x"], "--priority"),
    (["queue", "show", "99999999999999999999"], "out of range"),
    (["image", IMAGE, "-o", "x.png", "--seed", str(2**64)], "--seed"),
    (["zoom", "-o", "x.mp4", "--seconds", "1", "--seed", "-1"], "--seed"),
    (["zoom", "-o", "x.mp4", "--seconds", "1", "--fps", "0.0001"], "--fps"),
    (["render", "x.mp4", "-o", "y.mp4", "--start", "nan"], "--start"),
])
def test_numbers_are_checked(tmp_path, args, needle):
    assert_user_error(run_cli(*args, cwd=tmp_path), needle)


@pytest.mark.slow
def test_queue_add_checks_what_the_command_would(tmp_path, clip):
    db = tmp_path / "q.db"
    out = tmp_path / "o.mp4"
    for args, needle in (([tmp_path / "missing.mp4", "-o", out], "does not exist"),
                         ([clip, "-o", out, "-p", "no-such-preset"], "unknown preset"),
                         ([clip, "-o", out, "--size", "abc"], "WIDTHxHEIGHT"),
                         ([clip, "-o", tmp_path / "o.xyz"], "cannot hold")):
        assert_user_error(run_cli("queue", "--db", db, "add", "render", *args), needle)
    assert_user_error(run_cli("queue", "--db", db, "add", "--at", "2001-01-01T00:00", "render",
                              clip, "-o", out), "in the past")
    assert Queue(db).jobs() == []


# ---------------------------------------------------------------- 4. faults are reported
@pytest.mark.slow
def test_a_full_disk_is_an_error_and_resume_finishes(tmp_path, clip):
    out = tmp_path / "frames"

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    r = subprocess.run([sys.executable, "-m", "renderer.cli", "render", str(clip), "-o",
                        str(out), *PNG, "--size", "128x72"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, preexec_fn=small_disk)
    assert r.returncode != 0 and "wrote" not in r.stdout, r.stdout + r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "could not write" in err and "--resume" in err
    assert not out.exists()
    r = run_cli("render", clip, "-o", out, *PNG, "--size", "128x72", "--resume")
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.png"))) == 24


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Tom's clip.mp4", "-dash \"quoted\" ü.mp4"])
def test_any_file_name_works(tmp_path, clip, name):
    out = tmp_path / name
    r = run_cli("render", clip, "-o", out, *FAST)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------- 5. exit 2 for what the user can fix
@pytest.mark.slow
def test_user_fixable_problems_exit_2_before_any_work(tmp_path, clip):
    assert_user_error(run_cli("image", IMAGE, "-o", "/proc/dream.png"), "not writable")
    assert_user_error(run_cli("image", IMAGE, "-o", tmp_path / "x.xyz"), "image extension")
    assert_user_error(run_cli("image", IMAGE, "-o", tmp_path / "x.png", "--device", "foo"),
                      "--device")
    import torch
    if not torch.cuda.is_available():
        assert_user_error(run_cli("image", IMAGE, "-o", tmp_path / "x.png", "--device", "cuda"),
                          "no such CUDA GPU")
    started = time.time()
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "o.mp4", *FAST, "--set",
                              "encode.ffmpeg=/nonexistent/ffmpeg"), "not found")
    assert_user_error(run_cli("render", IMAGE, "-o", tmp_path / "o.mp4", *FAST), "still image")
    assert time.time() - started < 30
    plain = tmp_path / "plain"
    plain.write_text("a file")
    assert_user_error(run_cli("queue", "--db", plain / "q.db", "list"), "cannot be created")
    assert not work_dir(tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_a_damaged_part_manifest_is_named(tmp_path, clip):
    out = tmp_path / "o.mp4"
    r = run_cli("render", clip, "-o", out, *FAST, "--shard", "1/2")
    assert r.returncode == 0, r.stderr
    manifest = Part(0, 2).folder(out) / "done.json"
    manifest.write_text("{broken")
    assert_user_error(run_cli("render", clip, "-o", out, *FAST, "--assemble", "2"), "damaged")


def test_no_command_downloads_weights_and_empty_layers_are_refused(tmp_path):
    """Issue 33, items 4 and 5: `dream layers -m vgg16` without its weights is the same
    one-line error as `render` (no download attempted, even where downloads are not switched
    off); `--layers ""` names no layer and is refused, not replaced by the defaults."""
    from renderer.media.images import save_image
    import numpy as np

    image = tmp_path / "in.png"
    save_image(np.full((32, 32, 3), 128, np.uint8), image)
    online = {"DREAM_OFFLINE": "", "TORCH_HOME": str(tmp_path / "torch")}
    result = run_cli("layers", image, "-m", "vgg16", "-o", tmp_path / "sheet.png", env=online)
    assert_user_error(result, "vgg16", "not available offline")
    assert "Downloading" not in result.stderr and not (tmp_path / "torch").exists()
    preset = tmp_path / "vgg.yaml"
    preset.write_text("model: {name: vgg16}\nobjective: [features.20]\n")
    result = run_cli("image", image, "-p", preset, "-o", tmp_path / "out.png", env=online)
    assert_user_error(result, "vgg16", "not available offline")
    assert_user_error(run_cli("layers", image, "--layers", "", "-o", tmp_path / "s.png"),
                      "--layers", "empty layer")
    assert not (tmp_path / "sheet.png").exists() and not (tmp_path / "s.png").exists()


def test_outputs_inside_a_work_folder_loops_and_newlines_are_refused(tmp_path, clip):
    """Issue 33, items 1 and 5: an output written inside a leftover work folder would be wiped
    with it by the next render of its output; a symlink loop as the output or the PNG folder,
    and a newline in the name, are one-line errors (exit 2), not a RuntimeError or ffmpeg's
    message."""
    work = tmp_path / ".X.mp4.work"
    work.mkdir()
    (work / ".dream-work").touch()
    before = tree(tmp_path)
    assert_user_error(run_cli("render", clip, "-o", work / "inner.mp4", *FAST),
                      "work folder", "elsewhere")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "a", *PNG), "symlink loop")
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "a" / "out.mp4", *FAST),
                      "symlink loop")
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "two\nlines.mp4", *FAST),
                      "control character")
    assert_user_error(run_cli("image", clip.with_suffix(".png"), "-o", tmp_path / "a.png\n"),
                      "control character")
    assert tree(tmp_path) == {**before, **tree(tmp_path)} and not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_a_work_folder_keeps_the_files_dream_did_not_write(tmp_path, clip):
    """Issue 33, item 1: a render removed its leftover work folder whole (shutil.rmtree),
    whatever else was in it. Now only what renders write there goes; a foreign file stays,
    with the folder, and the render names it."""
    out = tmp_path / "X.mp4"
    assert run_cli("render", clip, "-o", out, "--part", "1/2", *FAST).returncode == 0
    work = work_dir(out)
    part = next(work.glob("part_*"))
    assert any(part.iterdir())
    (work / "final.mp4").write_bytes(b"a finished file someone kept here")
    (part / "notes.txt").write_text("mine")
    r = run_cli("render", clip, "-o", out, *FAST)
    assert r.returncode == 0, r.stderr
    assert out.exists() and "which dream did not write" in r.stderr, r.stderr
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == [
        ".dream-work", "final.mp4", part.name, f"{part.name}/notes.txt"]
    (work / "final.mp4").unlink()
    (part / "notes.txt").unlink()
    assert run_cli("render", clip, "-o", out, "--overwrite", *FAST).returncode == 0
    assert not work.exists()  # only ours was left: all of it goes


@pytest.mark.parametrize("expression", ["10**10**10", "0.01 + 0*(9**9**9**9)", "1/0",
                                        "exp(1e308) * log(0) + sqrt(-1)", "2.5"])
def test_a_driven_value_that_is_not_finite_or_out_of_range_is_refused(tmp_path, clip,
                                                                      expression):
    """Issue 33, item 2: these rendered an undreamed or NaN video with exit 0 (and a numpy
    warning); now each is one line naming the file, the line and the expression, before any
    work, and no output is written."""
    preset = tmp_path / "p.yaml"
    preset.write_text(f"extends: preview\ntimeline:\n  dream.step_size: \"{expression}\"\n")
    out = tmp_path / "o.mp4"
    result = run_cli("render", clip, "-o", out, "-p", preset, "--size", "64x36")
    assert_user_error(result, f"{preset}:3", "dream.step_size", expression, "keep it within")
    assert "Warning" not in result.stderr and not out.exists()


def test_an_expression_of_200000_terms_is_refused_not_a_recursion_error(tmp_path, clip):
    preset = tmp_path / "p.yaml"
    preset.write_text("extends: preview\ntimeline:\n  dream.step_size: \""
                      + "+".join(["0"] * 200_000) + "\"\n")
    result = run_cli("render", clip, "-o", tmp_path / "o.mp4", "-p", preset)
    assert_user_error(result, f"{preset}", "at most 2000")


def test_an_audio_file_without_samples_is_refused_and_a_cut_short_one_warned(tmp_path, clip):
    """Issue 33, item 3: `--audio` with a stream that holds no samples gave a video without
    audio (exit 0); a song that decodes to much less than its container says is analysed
    with a warning."""
    import numpy as np

    from renderer.media.audio import read_audio
    from renderer.media.probe import ffmpeg_exe

    empty = tmp_path / "empty.wav"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "anullsrc=r=44100:cl=mono", "-frames:a", "0", "-c:a", "pcm_s16le",
                    str(empty)], check=True)
    out = tmp_path / "o.mp4"
    assert_user_error(run_cli("render", clip, "-o", out, *FAST, "--audio", empty),
                      "no samples")
    assert not out.exists()
    # an mp3 of 3 s whose middle third is garbage: the decoder drops what it cannot read
    song = tmp_path / "damaged.mp3"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=3", "-c:a", "libmp3lame", "-b:a", "128k",
                    str(song)], check=True)
    data = bytearray(song.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(0).integers(0, 256, third, np.uint8).tobytes()
    song.write_bytes(bytes(data))
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("renderer.media.audio").addHandler(handler)
    try:
        samples = read_audio(song)
    finally:
        logging.getLogger("renderer.media.audio").removeHandler(handler)
    assert samples.size / 22050 < 0.9 * 3
    assert any("could be decoded" in r.getMessage() for r in records), records


@pytest.mark.slow
def test_dream_audio_reads_a_long_song_in_flat_memory(tmp_path):
    """Issue 33, item 3: `dream audio` held the whole song and its spectrograms (11.1 GB for a
    3-hour WAV, 1.9 GB for 5 minutes); it now reads and analyses a window at a time, and the
    plot needs no torch. Peak memory of the whole command on a 5-minute WAV, from the kernel."""
    from media import ffmpeg

    song = tmp_path / "long.wav"
    ffmpeg("-f", "lavfi", "-i", "aevalsrc='(0.1+0.9*lt(mod(t,0.5),0.04))*sin(2*PI*(110+880*lt("
           "mod(t,2),1))*t)':s=44100:d=300", "-c:a", "pcm_s16le", song)
    code = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', "
            f"'renderer.cli', 'audio', {str(song)!r}, '-o', {str(tmp_path / 'plot.png')!r}], "
            "stdout=subprocess.DEVNULL); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")), timeout=900)
    returncode, peak_kb = map(int, r.stdout.split())
    assert returncode == 0 and (tmp_path / "plot.png").exists(), r.stderr
    assert peak_kb < 900 * 1024, f"{peak_kb / 1024:.0f} MB"  # today 560 MB; was 1993


@pytest.mark.slow
def test_drain_waits_out_a_dead_workers_lease_and_leaves_a_live_workers_job(tmp_path, clip):
    """Issue 33, item 6: `worker --drain` exited 0 at once while a killed worker's job still
    held its lease ("running", 0 frames). Now it waits the lease out and takes the job over;
    a job whose worker keeps renewing its lease is left to it, and said so."""
    import threading

    db = tmp_path / "q.db"
    out = tmp_path / "dead.mp4"
    assert run_cli("queue", "--db", db, "add", "render", clip, "-o", out, *FAST).returncode == 0
    assert run_cli("queue", "--db", db, "add", "render", clip, "-o", tmp_path / "live.mp4",
                   *FAST).returncode == 0
    queue = Queue(db)
    dead = queue.claim("killed-host:1:abc/0", 4.0)  # killed: its lease is never renewed
    live = queue.claim("other-host:2:def/0", 3.0)
    stop = threading.Event()

    def renew():
        beat = Queue(db)
        while not stop.wait(0.5):
            beat.heartbeat(live, 3.0, {})

    threading.Thread(target=renew, daemon=True).start()
    try:
        started = time.time()
        r = subprocess.run([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                            "--root", str(ROOT), "--root", str(clip.parent), "--root",
                            str(tmp_path), "--drain", "--lease", "5"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        took = time.time() - started
    finally:
        stop.set()
    assert r.returncode == 0, r.stdout + r.stderr
    first = Queue(db).get(dead.id)
    assert first.state == "done" and first.attempts == 2 and out.exists(), r.stderr
    assert took >= 3.0  # the lease was waited out, not ignored
    assert f"job {live.id}: left to other-host:2:def/0" in r.stderr
    assert Queue(db).get(live.id).state == "running"


@pytest.mark.slow
def test_a_render_killed_while_joining_leaves_nothing_beside_it_and_resumes_exactly(tmp_path):
    """Issue 33, item 7: kill -9 during the final join left `.NAME.XXXX.partial.mp4` beside
    the output, still there after `--resume`; the frames of a resumed (and of any) H.264
    render were timed in whole milliseconds, a frame longer at each join (23.810 fps where
    the source has 24). Now the join writes inside the work folder, and every frame of the
    output keeps its source frame's time."""
    import signal

    import av

    from media import ffmpeg
    from renderer.media.probe import ffmpeg_exe

    source = tmp_path / "bframes.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24:duration=3", "-f", "lavfi", "-i",
           "sine=duration=3", "-c:v", "libx264", "-bf", "3", "-g", "12", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", source)
    flag = tmp_path / "joining"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f"#!/bin/sh\ncase \"$*\" in *concat*) [ -n \"$HANG_JOIN\" ] && "
                       f"touch '{flag}' && sleep 120;; esac\nexec '{ffmpeg_exe()}' \"$@\"\n")
    wrapper.chmod(0o755)
    args = ["render", source, *FAST, "--set", f"encode.ffmpeg={wrapper}", "--set",
            "video.checkpoint_every=8", "--batch", "2"]

    def frame_times(path):
        with av.open(str(path)) as container:
            return sorted(float(p.pts * p.time_base) for p in container.demux(video=0)
                          if p.pts is not None and p.size)

    ref = tmp_path / "ref.mp4"
    assert run_cli(*args, "-o", ref).returncode == 0
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "renderer.cli", *map(str, args), "-o",
                             str(out)], cwd=ROOT, env=dict(os.environ, HANG_JOIN="1"),
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert flag.exists() and not out.exists()
    # the half-joined file is inside the work folder, not beside it (the lock is reused)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == \
        [".out.mp4.lock", ".out.mp4.work"]
    r = run_cli(*args, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
    expected = [k / 24 for k in range(72)]
    for path in (ref, out):
        times = frame_times(path)
        assert len(times) == 72 and max(abs(a - b) for a, b in zip(times, expected)) < 1e-4, \
            (path.name, times[-3:])
    assert "72 frames, 64x36, 24.000 fps, 3.00 s" in r.stdout, r.stdout


# ------------------------------------------------------- round 4 (issue 41): shots, masks,
# audio offsets and planted files
def _left_half(path, size=(64, 36)):
    import cv2
    import numpy as np

    w, h = size
    picture = np.zeros((h, w), np.uint8)
    picture[:, : w // 2] = 255
    cv2.imwrite(str(path), picture)
    return path


def _tone(path, seconds=3):
    from media import ffmpeg

    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", path)
    return path


@pytest.mark.slow
def test_a_section_change_after_the_clips_end_is_a_note_not_a_crash(tmp_path, clip):
    """Item 1: `-p music-video --audio SONG --end 1` crashed with an IndexError when the
    song's next section change came after the clip's end (render and zoom), and `section: N`
    past the end likewise. Now such a shot is not shown, and a note says so."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_test_song.py"), "--out",
                    str(tmp_path / "song.wav"), "--bars", "4,4,4"], check=True,
                   capture_output=True)
    song = tmp_path / "song.wav"
    late = tmp_path / "late.yaml"
    late.write_text("extends: music-video\nshots:\n  - {section: 1, objective: [features.12]}\n")
    small = ["--size", "64x36", "--set", "dream.octaves=1", "--set", "dream.steps=1",
             "--set", "flow.steps=0"]
    for preset in ("music-video", str(late)):
        r = run_cli("render", clip, "-p", preset, "--audio", song, "--end", "1", "-o",
                    tmp_path / f"{Path(preset).stem}.mp4", *small)
        assert r.returncode == 0, r.stderr
        assert "after the render's end" in r.stdout + r.stderr or \
            "never comes" in r.stdout + r.stderr, r.stdout + r.stderr
    r = run_cli("zoom", "-p", "music-video", "--audio", song, "--seconds", "1", "--fps", "6",
                "-o", tmp_path / "zoom.mp4", "--size", "48x48", "--set", "zoom.steps=1")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("command", ["render", "image", "zoom", "mask"])
def test_an_output_never_replaces_a_mask_file(tmp_path, clip, command):
    """Item 2: `-o` naming the mask file with --overwrite replaced it."""
    mask = _left_half(tmp_path / "mask.png")
    kept = mask.read_bytes()
    source = {"render": [clip], "image": [IMAGE], "zoom": [], "mask": [clip]}[command]
    extra = ["--seconds", "1"] if command == "zoom" else []
    out = mask if command in ("image", "mask") else tmp_path / "mask.mp4"
    if out != mask:  # the mask is a video here
        from media import ffmpeg

        ffmpeg("-f", "lavfi", "-i", "color=white:size=64x36:rate=24:duration=1", "-pix_fmt",
               "yuv420p", out)
        mask, kept = out, out.read_bytes()
    args = [command, *source, "--mask", mask, "-o", out, "--overwrite", *extra]
    if command != "mask":
        args += ["-p", "preview", "--size", "64x36"]
    assert_user_error(run_cli(*args), "is the input")
    assert mask.read_bytes() == kept


def test_an_output_never_replaces_a_frame_of_a_mask_folder(tmp_path, clip):
    folder = tmp_path / "masks"
    folder.mkdir()
    frames = [_left_half(folder / f"{k:03d}.png") for k in range(3)]
    kept = frames[0].read_bytes()
    assert_user_error(run_cli("mask", clip, "--mask", folder, "-o", frames[0], "--overwrite"),
                      "input folder")
    assert frames[0].read_bytes() == kept


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_a_planted_lock_file_is_never_written_through(tmp_path, clip, plant):
    """Item 3: `.W2.mp4.lock -> precious.txt` got the render's PID written into precious.txt."""
    precious = tmp_path / "precious.txt"
    precious.write_text("a year of notes")
    lock = tmp_path / ".W2.mp4.lock"
    (os.symlink if plant == "symlink" else os.link)(precious, lock)
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "W2.mp4", *FAST),
                      "not dream's lock file")
    assert precious.read_text() == "a year of notes"
    assert not (tmp_path / "W2.mp4").exists()


def test_work_folder_cleanup_deletes_only_its_own_temporary_files(tmp_path):
    """Item 4: cleanup took hidden user files such as `.holiday.original` for files being
    written (a dot, a name, a dot, eight letters) and deleted them."""
    from renderer.outputs import WORK_MARKER, atomic_path
    from renderer.render.checkpoints import remove_work_folder

    work = tmp_path / ".out.mp4.work"
    work.mkdir()
    (work / WORK_MARKER).touch()
    mine = {".holiday.original": "photos", ".thesis.draft_v2_final": "chapter 3"}
    for name, text in mine.items():
        (work / name).write_text(text)
    (work / "checkpoint.json").write_text("{}")
    with atomic_path(work / "state_00000001.pt") as tmp:
        left_behind = tmp.with_name(tmp.name + "x")  # as a kill would leave a temporary file
        left_behind.write_text("half")
        tmp.write_text("whole")
    remove_work_folder(work)
    assert {p.name: p.read_text() for p in work.iterdir() if p.name != WORK_MARKER} == mine


def test_a_huge_mask_picture_is_refused_from_its_header_in_little_memory(tmp_path, clip):
    """Item 5: a 20000x20000 PNG mask (1.2 MB) for a 96x64 render peaked at 11 GB. Now a
    picture's size is read from its header and a picture over 64 megapixels is refused; one
    under it is scaled down before it becomes float."""
    import cv2
    import numpy as np

    huge = tmp_path / "huge.png"
    cv2.imwrite(str(huge), np.zeros((20000, 20000), np.uint8))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.full((9000, 9000), 255, np.uint8))
    for args in (["render", clip, "-o", tmp_path / "a.mp4", *FAST], ["mask", clip, "-o",
                                                                     tmp_path / "a.png"]):
        for mask in (huge, big):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            r = run_cli(*args, "--mask", mask)
            assert_user_error(r, "megapixels", "scale it down")
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            assert peak < 2 * 2**20 or peak == before, peak  # KB: under 2 GB
    fine = tmp_path / "fine.png"  # 7000x5000: decoded, framed as uint8, then float at 96x64
    cv2.imwrite(str(fine), np.full((5000, 7000, 4), 255, np.uint8))
    r = run_cli("mask", clip, "--mask", fine, "-o", tmp_path / "fine_preview.png",
                "--size", "96x64")
    assert r.returncode == 0, r.stderr
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2 * 2**20


def test_audio_offsets_past_the_songs_end_are_refused(tmp_path, clip):
    """Item 6: `dream audio --start 10000000` grew to 23.7 GB; `render --audio-start` past the
    end died with MemoryError, or wrote a silent output at exit 0."""
    song = _tone(tmp_path / "song.wav")
    assert_user_error(run_cli("audio", song, "--start", "10000000", "-o", tmp_path / "a.png"),
                      "--start 1e+07 is past the end", "3.0 s long")
    for preset in ("music-pulse", "preview"):
        r = run_cli("render", clip, "-p", preset, "--audio", song, "--audio-start", "400",
                    "-o", tmp_path / "b.mp4", "--size", "64x36")
        assert_user_error(r, "--audio-start 400 is past the end")
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.mp4").exists()
    assert_user_error(run_cli("queue", "--db", tmp_path / "q.db", "add", "render", clip, "-o",
                              tmp_path / "c.mp4", "--audio", song, "--audio-start", "5"),
                      "past the end")


def test_a_fifo_as_a_mask_is_refused_not_waited_on(tmp_path, clip):
    """Item 7: a FIFO as a mask (or in a mask folder) hung forever."""
    fifo = tmp_path / "mask.png"
    os.mkfifo(fifo)
    folder = tmp_path / "masks"
    folder.mkdir()
    _left_half(folder / "000.png")
    os.mkfifo(folder / "001.png")
    for args in (["render", clip, "-o", tmp_path / "a.mp4", *FAST, "--mask", fifo],
                 ["mask", clip, "-o", tmp_path / "a.png", "--mask", fifo],
                 ["mask", clip, "-o", tmp_path / "b.png", "--mask", folder, "--set",
                  "mask.hold_last=true"]):
        assert_user_error(run_cli(*args), "not a regular file")


@pytest.mark.parametrize("text", [
    "shots:\n  - {at: -1, objective: [features.10]}",
    "shots:\n  - {at: 1, objective: [features.10], transition: {length: -5}}",
    "shots:\n  - {at: 1, objective: [features.10], transition: {length: .nan}}",
    "shots:\n  - {at: 1, objective: [features.10], transition: {length: .inf}}",
    "shots:\n  - {at: .nan, objective: [features.10]}",
    "timeline:\n  dream.step_size: [{at: -100, value: 0.01}]",
    "timeline:\n  dream.step_size: [{at: .nan, value: 0.01}]"])
def test_times_given_as_yaml_numbers_are_range_checked(tmp_path, text):
    """Item 8: numbers skipped the range check that strings get (negative and NaN times
    rendered at exit 0; NaN and infinite lengths died with ValueError / OverflowError)."""
    preset = tmp_path / "times.yaml"
    preset.write_text(f"extends: video\n{text}\n")
    assert_user_error(run_cli("presets", "show", preset), "out of range", "times.yaml:")


@pytest.mark.slow
def test_worker_root_confines_what_shots_read(tmp_path, clip):
    """Item 9: jobs whose shot read `guide:/outside/secret.jpg@features.10` or
    `extends: /outside/evil.yaml` ran to done under `dream worker --root`."""
    outside, inside = tmp_path / "outside", tmp_path / "inside"
    outside.mkdir()
    inside.mkdir()
    secret = outside / "secret.jpg"
    secret.write_bytes(IMAGE.read_bytes())
    (outside / "evil.yaml").write_text("extends: preview\n")
    guided = inside / "guided.yaml"
    guided.write_text(f"extends: preview\nshots:\n  - {{at: 0.2, objective: "
                      f"['guide:{secret}@features.10']}}\n")
    extending = inside / "extending.yaml"
    extending.write_text(f"extends: preview\nshots:\n  - {{at: 0.2, extends: "
                         f"{outside / 'evil.yaml'}}}\n")
    parent = inside / "parent.yaml"
    parent.write_text(f"extends: {outside / 'evil.yaml'}\n")
    db = tmp_path / "q.db"
    for k, preset in enumerate((guided, extending, parent)):
        _insert_job(db, [str(clip), "-o", str(inside / f"{k}.mp4"), *FAST[2:], "-p",
                         str(preset)], inside)
    r = subprocess.run([sys.executable, "-m", "renderer.cli", "worker", "--db", str(db),
                        "--drain", "--root", str(inside), "--root", str(clip.parent)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = Queue(db).jobs()
    assert [j.state for j in jobs] == ["failed"] * 3, [(j.state, j.error) for j in jobs]
    assert all("outside the worker's folders" in j.error for j in jobs), \
        [j.error for j in jobs]
    assert not any(inside.glob("*.mp4"))


def test_smaller_round_4_findings_are_one_line_refusals_before_work(tmp_path, clip):
    """The smaller findings: a damaged frame in a mask folder found only mid-render; `queue
    add` skipping the mask checks; a NaN TIFF mask dreaming nothing at exit 0; `--mask ""`
    ignored; a work folder that is a symlink to a user folder written into."""
    import cv2
    import numpy as np

    folder = tmp_path / "masks"
    folder.mkdir()
    for k in range(3):
        _left_half(folder / f"{k:03d}.png")
    data = (folder / "002.png").read_bytes()
    (folder / "002.png").write_bytes(data[: len(data) // 2])
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "a.mp4", *FAST, "--mask",
                              folder, "--set", "mask.hold_last=true"), "002.png", "cut short")
    db = tmp_path / "q.db"
    assert_user_error(run_cli("queue", "--db", db, "add", "render", clip, "-o",
                              tmp_path / "b.mp4", "--mask", tmp_path / "nothere.png"),
                      "does not exist")
    assert_user_error(run_cli("queue", "--db", db, "add", "render", clip, "-o",
                              tmp_path / "b.mp4", "--mask", folder, "--set",
                              "mask.hold_last=true"), "cut short")
    nan = tmp_path / "nan.tiff"
    cv2.imwrite(str(nan), np.full((36, 64), np.nan, np.float32))
    r = run_cli("render", clip, "-o", tmp_path / "c.mp4", *FAST, "--mask", nan)
    assert_user_error(r, "not numbers")
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "d.mp4", *FAST, "--mask", ""),
                      "--mask is empty")
    users = tmp_path / "holiday"
    users.mkdir()
    (tmp_path / ".e.mp4.work").symlink_to(users)
    assert_user_error(run_cli("render", clip, "-o", tmp_path / "e.mp4", *FAST), "symlink")
    assert list(users.iterdir()) == []
    assert not any(tmp_path.glob("[a-e].mp4"))


@pytest.mark.slow
def test_flow_worker_processes_die_with_a_killed_render(tmp_path):
    """Smaller finding: kill -9 of a render with flow processes left the workers (and the
    resource tracker they hold open) running for minutes."""
    import signal

    from media import ffmpeg

    source = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24:duration=20", "-pix_fmt",
           "yuv420p", source)
    proc = subprocess.Popen([sys.executable, "-m", "renderer.cli", "render", str(source), "-o",
                             str(tmp_path / "out.mp4"), "-p", "preview", "--size", "96x64",
                             "--set", "video.flow_workers=processes", "--device", "cpu"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def descendants(pid):
        found, todo = [], [pid]
        while todo:
            here = todo.pop()
            for task in Path(f"/proc/{here}/task").glob("*/children"):
                kids = [int(c) for c in task.read_text().split()]
                found += kids
                todo += kids
        return found

    deadline, workers = time.time() + 120, []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = [p for p in descendants(proc.pid)
                   if b"multiprocessing" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert workers, "no flow worker process started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    def running(pid):  # a zombie waits for whoever adopted it to reap it: it runs no more
        try:
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while time.time() < deadline and any(map(running, workers)):
        time.sleep(0.2)
    assert not any(map(running, workers)), workers
