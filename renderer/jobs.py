"""The job queue: render and zoom jobs in SQLite (WAL), claimed atomically under a lease.

A worker claims the best runnable job in one UPDATE ... RETURNING inside BEGIN IMMEDIATE, so two
workers can never take the same job. Each claim bumps the job's epoch, its fencing token: the
heartbeat, the progress writes and every file the render commits (checkpoints, the output's
final rename) check in one transaction that the epoch is still theirs, so a worker that stalled
past its lease writes nothing once another has taken the job over. A job whose worker died keeps
its expired lease and is claimed again by the next worker, which runs the render with --resume
and continues from its checkpoint; after MAX_ATTEMPTS such take-overs it fails.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import LeaseLost, UserError


class QueueBusy(UserError):
    """The database stayed locked by another process past the busy timeout."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    cwd TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    after INTEGER,
    state TEXT NOT NULL DEFAULT 'queued',
    worker TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER,
    fps REAL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    log TEXT
);
"""
COLUMNS = {"epoch": "INTEGER NOT NULL DEFAULT 0", "fresh": "INTEGER NOT NULL DEFAULT 0"}
FINISHED = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 3  # claims of one job (take-overs after a lost lease) before it fails
FENCE_ENV = "DREAM_JOB_FENCE"  # set by the worker for a job's render: [database, job, epoch]


def default_db() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(os.environ.get("DREAM_QUEUE") or Path(base) / "dream" / "queue.db")


@dataclass
class Job:
    id: int
    kind: str
    args: list[str]
    cwd: str
    priority: int
    state: str
    attempts: int
    frames_done: int
    frames_total: int | None
    fps: float | None
    worker: str | None
    error: str | None
    log: str | None
    after: int | None
    not_before: float
    epoch: int  # the fencing token of the current claim
    fresh: bool  # the next run starts over instead of resuming (`queue retry --fresh`)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        try:
            args = json.loads(row["args"])
        except (TypeError, ValueError):
            args = None
        if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            args = None  # a damaged or foreign row: the worker fails it, `list` shows it
        return cls(row["id"], row["kind"], args, row["cwd"], row["priority"],
                   row["state"], row["attempts"], row["frames_done"], row["frames_total"],
                   row["fps"], row["worker"], row["error"], row["log"], row["after"],
                   row["not_before"], row["epoch"], bool(row["fresh"]))

    @property
    def eta(self) -> float | None:
        if self.fps and self.frames_total:
            return max(0.0, (self.frames_total - self.frames_done) / self.fps)
        return None


class Queue:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_db()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"queue database folder '{self.path.parent}' cannot be created "
                            f"({exc.strerror or exc}): give another --db") from None
        if self.path.is_dir():
            raise UserError(f"queue database '{self.path}' is a folder: give a file for --db")
        with self._errors():
            self.db = sqlite3.connect(self.path, timeout=0.1, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            busy_ms = int(os.environ.get("DREAM_QUEUE_BUSY_MS", "10000"))
            self.db.execute(f"PRAGMA busy_timeout={busy_ms}")
            self.db.executescript(SCHEMA)
            have = {row["name"] for row in self.db.execute("PRAGMA table_info(jobs)")}
            for name, kind in COLUMNS.items():  # databases made by earlier versions
                if name not in have:
                    self.db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    @contextmanager
    def _errors(self):
        """SQLite failures as one-line errors that say what to do; the file is never touched."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise QueueBusy(f"queue database '{self.path}' is locked by another process: "
                                "try again in a moment") from None
            raise UserError(f"queue database '{self.path}' cannot be used: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise UserError(f"queue database '{self.path}' is damaged ({exc}): move it aside "
                            "and the queue starts empty") from None

    @contextmanager
    def transaction(self):
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------ user commands
    def add(self, kind: str, args: list[str], cwd: str, priority: int = 0,
            not_before: float = 0.0, after: int | None = None) -> int:
        with self.transaction() as db:
            if after is not None and db.execute("SELECT 1 FROM jobs WHERE id=?",
                                                (after,)).fetchone() is None:
                raise UserError(f"--after {after}: no such job ('dream queue list' shows them)")
            cur = db.execute("INSERT INTO jobs (kind, args, cwd, priority, not_before, after, "
                             "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (kind, json.dumps(args), cwd, priority, not_before, after,
                              time.time()))
            return cur.lastrowid

    def get(self, job_id: int) -> Job:
        with self._errors():
            row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise UserError(f"no job {job_id} in the queue ('dream queue list' shows them)")
        return Job.from_row(row)

    def jobs(self) -> list[Job]:
        with self._errors():
            rows = self.db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        return [Job.from_row(r) for r in rows]

    def cancel(self, job_id: int) -> None:
        job = self.get(job_id)
        if job.state in FINISHED:
            raise UserError(f"job {job_id} is already {job.state}: nothing to cancel")
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=?",
                       (time.time(), job_id))

    def retry(self, job_id: int, fresh: bool = False) -> None:
        """Queue a failed or cancelled job again; `fresh` drops its checkpoint and starts over."""
        job = self.get(job_id)
        if job.state not in ("failed", "cancelled"):
            raise UserError(f"job {job_id} is {job.state}: only failed or cancelled jobs are "
                            "retried")
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state='queued', error=NULL, worker=NULL, attempts=0, "
                       "lease_until=NULL, finished=NULL, fresh=? WHERE id=?",
                       (int(fresh), job_id))

    # ------------------------------------------------------------ worker side
    def claim(self, worker: str, lease: float) -> Job | None:
        """Atomically take the best runnable job (or one whose worker's lease ran out), with a
        new epoch; a job taken over MAX_ATTEMPTS times fails instead."""
        now = time.time()
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state='failed', finished=?, lease_until=NULL, error=? "
                       "WHERE state='running' AND lease_until < ? AND attempts >= ?",
                       (now, f"gave up after {MAX_ATTEMPTS} attempts: its worker stopped "
                             "answering each time ('dream queue retry' runs it again)",
                        now, MAX_ATTEMPTS))
            row = db.execute(
                "UPDATE jobs SET state='running', worker=?, lease_until=?, epoch=epoch+1, "
                "attempts=attempts+1, started=coalesce(started, ?) WHERE id = ("
                " SELECT j.id FROM jobs j WHERE (j.state='queued' OR (j.state='running'"
                " AND j.lease_until < ?)) AND j.not_before <= ? AND (j.after IS NULL OR"
                " (SELECT state FROM jobs p WHERE p.id = j.after) = 'done')"
                " ORDER BY j.priority DESC, j.id LIMIT 1) RETURNING *",
                (worker, now + lease, now, now, now)).fetchone()
        return Job.from_row(row) if row else None

    def heartbeat(self, job: Job, lease: float, progress: dict) -> bool:
        """Extend the lease and record progress; False if the job is no longer ours."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_until=?, frames_done=coalesce(?, frames_done), "
                "frames_total=coalesce(?, frames_total), fps=coalesce(?, fps) "
                "WHERE id=? AND epoch=? AND state='running'",
                (time.time() + lease, progress.get("done"), progress.get("total"),
                 progress.get("fps"), job.id, job.epoch))
            return cur.rowcount == 1

    def finish(self, job: Job, state: str, error: str | None = None) -> None:
        """Record the end of our claim of `job` (nothing, if it is no longer ours)."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state=?, error=?, finished=?, lease_until=NULL "
                       "WHERE id=? AND epoch=? AND state='running'",
                       (state, error, time.time(), job.id, job.epoch))

    def started_fresh(self, job: Job) -> None:
        """A fresh run has begun: a later take-over resumes from its checkpoints again."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET fresh=0 WHERE id=? AND epoch=?", (job.id, job.epoch))

    def log_file(self, job_id: int) -> Path:
        """Where a job's log is: always computed here, never read from the database."""
        return self.path.parent / "logs" / f"job_{int(job_id)}.log"

    def set_log(self, job_id: int, log: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE jobs SET log=? WHERE id=?", (log, job_id))


def die_with_parent() -> None:
    """Linux: the render dies with its worker, so a reclaimed job never runs twice."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def job_command(job: Job) -> list[str]:
    """The render or zoom command of a job, with --resume: a job taken over from a dead worker
    continues from its checkpoint (a fresh job has none and starts at the beginning). A job
    retried with --fresh starts over once."""
    resume = [] if job.fresh or "--resume" in job.args else ["--resume"]
    return [sys.executable, "-m", "renderer.cli", job.kind, *job.args, *resume]


def fence_env(queue: Queue, job: Job) -> dict:
    """The environment that makes a job's render check its lease before every commit."""
    return {FENCE_ENV: json.dumps([str(queue.path.resolve()), job.id, job.epoch])}


@contextmanager
def fenced():
    """Around a write that commits a queued job's work (a checkpoint, progress, the output):
    holds the queue's write lock while it runs, and raises LeaseLost instead if another worker
    took the job over. Outside a queued job it does nothing."""
    spec = os.environ.get(FENCE_ENV)
    if not spec:
        yield
        return
    path, job_id, epoch = json.loads(spec)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT epoch, state FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None or tuple(row) != (epoch, "running"):
            db.execute("ROLLBACK")
            raise LeaseLost(f"job {job_id} was taken over by another worker (its lease ran out): "
                            "this render stops without writing")
        try:
            yield
        finally:
            db.execute("COMMIT")
    finally:
        db.close()


def run_job(queue: Queue, job: Job, worker: str, lease: float, env: dict | None = None,
            vet=None) -> str:
    """Run one claimed job to its end; returns its final state. `vet(job)` may refuse it (a
    reason string) before anything runs."""
    log = queue.log_file(job.id)
    log.parent.mkdir(exist_ok=True)
    progress_file = log.with_name(f"job_{job.id}.progress.json")
    refusal = "its arguments are not a JSON list of strings" if job.args is None else \
        vet(job) if vet else None
    if refusal:
        queue.finish(job, "failed", f"refused: {refusal}")
        return "failed"
    queue.set_log(job.id, str(log))
    child_env = dict(os.environ, **(env or {}), **fence_env(queue, job),
                     DREAM_PROGRESS_FILE=str(progress_file))
    with log.open("a") as out:
        out.write(f"--- attempt {job.attempts} on {worker}\n")
        out.flush()
        try:
            proc = subprocess.Popen(job_command(job), cwd=job.cwd, stdout=out,
                                    stderr=subprocess.STDOUT, env=child_env,
                                    preexec_fn=die_with_parent)
        except OSError as exc:  # its working folder is gone, or cannot be entered
            queue.finish(job, "failed", f"cannot start in '{job.cwd}': {exc.strerror or exc}")
            return "failed"
        if job.fresh:
            queue.started_fresh(job)
        while proc.poll() is None:
            time.sleep(min(1.0, lease / 4))
            try:
                ours = queue.heartbeat(job, lease, read_progress([progress_file]))
            except QueueBusy:  # the lease has slack; the next beat tries again
                continue
            if not ours:
                proc.kill()  # cancelled, or our lease was taken over
                proc.wait()
                return "cancelled"
    if proc.returncode == 0:
        queue.finish(job, "done")
        return "done"
    if not queue.heartbeat(job, lease, {}):  # cancelled, or taken over: its fence stopped it
        return "cancelled"
    last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
    queue.finish(job, "failed", f"exit {proc.returncode}: {last[0] if last else '?'}")
    return "failed"


def work(queue: Queue, slots: int = 1, lease: float = 30.0, drain: bool = False,
         poll: float = 2.0, say=print, vet=None) -> None:
    """Run jobs until interrupted (or, with `drain`, until no job is runnable).

    A job's own failure fails that job and the worker goes on; a busy database is waited
    out with back-off; any other queue error stops every slot and is raised here.
    """
    name = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    fatal: list[BaseException] = []

    def slot(k: int) -> None:
        env = {"CUDA_VISIBLE_DEVICES": str(k)} if slots > 1 else {}
        backoff = 0.5
        try:
            own = Queue(queue.path)
            while not fatal:
                try:
                    job = own.claim(f"{name}/{k}", lease)
                except QueueBusy:
                    time.sleep(backoff)
                    backoff = min(10.0, backoff * 2)
                    continue
                backoff = 0.5
                if job is None:
                    if drain:
                        return
                    time.sleep(poll)
                    continue
                say(f"job {job.id}: {job.kind} (attempt {job.attempts}) on slot {k}")
                state = run_job(own, job, f"{name}/{k}", lease, env, vet)
                say(f"job {job.id}: {state}")
        except BaseException as exc:
            fatal.append(exc)

    threads = [threading.Thread(target=slot, args=(k,), daemon=True) for k in range(slots)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    if fatal:
        raise fatal[0]


def read_progress(paths: list) -> dict:
    """What renders left with `report_progress`: frames done and total and fps, summed over
    the files (the parts of a split job run at once); {} before any report."""
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    if not reports:
        return {}
    return {key: sum(r[key] for r in reports) for key in ("done", "total", "fps")}


def report_progress(done: int, total: int, started: float) -> None:
    """Called by a render: leave progress where the worker's heartbeat reads it."""
    path = os.environ.get("DREAM_PROGRESS_FILE")
    if not path:
        return
    elapsed = max(1e-6, time.perf_counter() - started)
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps({"done": done, "total": total, "fps": done / elapsed}))
    with fenced():
        os.replace(tmp, path)
