"""Fencing for queued jobs: a write that commits a job's work first checks, under the queue's
write lock, that the job's lease is still the one this render was started with.

The worker hands its claim to the render as an environment variable; outside a queued job
`fenced()` does nothing. Kept apart from the queue so that the file writers (outputs,
checkpoints) can fence without importing the job system.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager

from renderer.errors import LeaseLost

FENCE_ENV = "DREAM_JOB_FENCE"  # set by the worker for a job's render: [database, job, epoch]


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
