"""The job queue: render and zoom jobs in SQLite (WAL), claimed atomically under a lease.
(Workers that run the jobs: `jobs.workers` and `jobs.ray`; the fence: `renderer.fence`.)

A worker claims the best runnable job in one UPDATE ... RETURNING inside BEGIN IMMEDIATE, so two
workers can never take the same job. Each claim bumps the job's epoch, its fencing token: the
heartbeat, the progress writes and every file the render commits (checkpoints, the output's
final rename) check in one transaction that the epoch is still theirs, so a worker that stalled
past its lease writes nothing once another has taken the job over. A job whose worker died keeps
its expired lease and is claimed again by the next worker, which runs the render with --resume
and continues from its checkpoint; after MAX_ATTEMPTS such take-overs it fails.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from renderer.errors import UserError


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
COLUMNS = {"epoch": "INTEGER NOT NULL DEFAULT 0", "fresh": "INTEGER NOT NULL DEFAULT 0",
           "beat": "REAL"}  # added by later versions; `beat`: the time of the last heartbeat
FINISHED = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 3  # claims of one job (take-overs after a lost lease) before it fails
STALE_AFTER = 5.0  # seconds without a heartbeat (beats come at least once a second) that
# `queue list` calls a running job stale


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
    lease_until: float | None
    beat: float | None  # when its worker last reported

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
                   row["not_before"], row["epoch"], bool(row["fresh"]), row["lease_until"],
                   row["beat"])

    @property
    def eta(self) -> float | None:
        if self.fps and self.frames_total and self.state == "running" and not self.stale():
            return max(0.0, (self.frames_total - self.frames_done) / self.fps)
        return None

    def stale(self, now: float | None = None) -> bool:
        """A running job whose worker stopped reporting: it beats several times a lease, so
        a few missed beats (or a lease run out) mean it died or hangs. The next worker takes
        the job over when the lease runs out."""
        if self.state != "running" or self.lease_until is None:
            return False
        now = time.time() if now is None else now
        if self.lease_until < now:
            return True
        return self.beat is not None and now > self.beat + STALE_AFTER

    def blocker(self, jobs: dict[int, "Job"]) -> "Job | None":
        """The failed or cancelled job this queued job runs after (it never runs unless that
        one is retried), or None."""
        first = jobs.get(self.after) if self.state == "queued" and self.after else None
        return first if first is not None and first.state in ("failed", "cancelled") else None

    def status(self, jobs: dict[int, "Job"]) -> str:
        """The state as `queue list` shows it: also whether a queued job is blocked or waits,
        a running one stale, a done one resumed."""
        if (blocker := self.blocker(jobs)) is not None:
            return f"blocked (job {blocker.id} {blocker.state})"
        if self.state == "queued" and self.after is not None:
            first = jobs.get(self.after)
            if first is not None and first.state != "done":
                return f"queued (after job {self.after})"
        if self.state == "queued" and self.not_before > time.time():
            return "queued (at " + time.strftime("%H:%M", time.localtime(self.not_before)) + ")"
        if self.stale():
            return "stale (worker silent)"
        if self.state == "done" and self.attempts > 1:
            return f"done ({self.attempts} attempts, resumed)"
        return self.state


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
                "UPDATE jobs SET state='running', worker=?, lease_until=?, beat=?, "
                "epoch=epoch+1, attempts=attempts+1, started=coalesce(started, ?) WHERE id = ("
                " SELECT j.id FROM jobs j WHERE (j.state='queued' OR (j.state='running'"
                " AND j.lease_until < ?)) AND j.not_before <= ? AND (j.after IS NULL OR"
                " (SELECT state FROM jobs p WHERE p.id = j.after) = 'done')"
                " ORDER BY j.priority DESC, j.id LIMIT 1) RETURNING *",
                (worker, now + lease, now, now, now, now)).fetchone()
        return Job.from_row(row) if row else None

    def waits(self) -> list[tuple[int, str | None, float]]:
        """What is not runnable now but may become so by waiting: (job id, its worker, when)
        for each running job under a lease (when it runs out) and each queued job held back
        until a time (worker None)."""
        now = time.time()
        with self._errors():
            rows = self.db.execute(
                "SELECT id, worker, lease_until AS until FROM jobs WHERE state='running' AND "
                "lease_until >= ? UNION ALL SELECT id, NULL, not_before FROM jobs WHERE "
                "state='queued' AND not_before > ?", (now, now)).fetchall()
        return [(row["id"], row["worker"], row["until"]) for row in rows]

    def blocked(self) -> list[tuple[int, int, str]]:
        """(job, the job it runs after, that job's state) for each queued job that waits for
        a job that failed or was cancelled: it never runs unless that one is retried."""
        jobs = {job.id: job for job in self.jobs()}
        return [(job.id, blocker.id, blocker.state) for job in jobs.values()
                if (blocker := job.blocker(jobs)) is not None]

    def heartbeat(self, job: Job, lease: float, progress: dict) -> bool:
        """Extend the lease and record progress; False if the job is no longer ours."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_until=?, beat=?, frames_done=coalesce(?, frames_done), "
                "frames_total=coalesce(?, frames_total), fps=coalesce(?, fps) "
                "WHERE id=? AND epoch=? AND state='running'",
                (now + lease, now, progress.get("done"), progress.get("total"),
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
