"""Local workers: claim jobs from the queue and run each as a `dream` child process, keeping
its lease alive with heartbeats that also carry its progress. Several slots share one queue
(one GPU each); a job whose worker died is taken over and resumed from its checkpoint."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid

from renderer.fence import FENCE_ENV
from renderer.jobs.child import start_child
from renderer.jobs.progress import PROGRESS_ENV, read_progress
from renderer.jobs.queue import Job, Queue, QueueBusy


def job_command(job: Job) -> list[str]:
    """The render or zoom command of a job, with --resume: a job taken over from a dead worker
    continues from its checkpoint (a fresh job has none and starts at the beginning). A job
    retried with --fresh starts over once."""
    resume = [] if job.fresh or "--resume" in job.args else ["--resume"]
    return [sys.executable, "-m", "renderer.cli", job.kind, *job.args, *resume]


def fence_env(queue: Queue, job: Job) -> dict:
    """The environment that makes a job's render check its lease before every commit."""
    return {FENCE_ENV: json.dumps([str(queue.path.resolve()), job.id, job.epoch])}


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
    child_env = dict(env or {}, **fence_env(queue, job), **{PROGRESS_ENV: str(progress_file)})
    try:
        proc = start_child(job_command(job), job.cwd, log, f"attempt {job.attempts} on {worker}",
                           child_env)
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
        try:  # the last report, written after the last beat
            queue.heartbeat(job, lease, read_progress([progress_file]))
        except QueueBusy:
            pass
        queue.finish(job, "done")
        return "done"
    if not queue.heartbeat(job, lease, {}):  # cancelled, or taken over: its fence stopped it
        return "cancelled"
    queue.finish(job, "failed", failure(proc.returncode, log))
    return "failed"


def failure(code: int, log) -> str:
    """Why a job's command failed: its exit code and the last line it wrote (its error)."""
    try:
        lines = [line for line in open(log, errors="replace").read().splitlines()
                 if line.strip() and not line.startswith("--- ")]
    except OSError:
        lines = []
    return f"exit {code}: {lines[-1] if lines else 'it wrote nothing'}"


def outcome(queue: Queue, job_id: int, state: str) -> str:
    """The line a worker prints when a job ends: a failure with its reason."""
    if state != "failed":
        return f"job {job_id}: {state}"
    error = queue.get(job_id).error or "no reason recorded"
    return f"job {job_id}: failed: {error} (dream queue logs {job_id} shows its log)"


def blocked_note(queue: Queue) -> list[str]:
    """Lines for queued jobs that can never run as things stand: each waits for a job that
    failed or was cancelled."""
    return [f"job {job_id} stays queued: it runs after job {after}, which {state}: "
            f"'dream queue retry {after}' runs that again, 'dream queue cancel {job_id}' "
            "drops this one" for job_id, after, state in queue.blocked()]


class Drain:
    """When a draining worker may stop: when no job is runnable now and none becomes so by
    waiting. A lease that runs out (its worker died) is waited out, so the job is taken over;
    a job whose worker renews its lease is alive and left to it; a queued job held back until
    a time is waited for. Jobs of `mine` (this worker's other slots) are not waited for."""

    def __init__(self, mine: str, say=print):
        self.mine, self.say = mine, say
        self.first: dict[int, float] = {}  # running job -> the lease end first seen
        self.alive: set[int] = set()  # jobs whose worker renewed its lease: left to it
        self.lock = threading.Lock()

    def wait(self, queue: Queue) -> float | None:
        """Seconds until something may become runnable; None: stop draining."""
        now, soonest = time.time(), None
        with self.lock:
            for job_id, worker, until in queue.waits():
                if worker is not None:
                    if worker.startswith(self.mine) or job_id in self.alive:
                        continue
                    if job_id not in self.first:
                        self.first[job_id] = until
                        self.say(f"job {job_id}: held by {worker}, whose lease runs out in "
                                 f"{until - now:.0f} s: waiting to see whether it renews it")
                    elif until > self.first[job_id]:
                        self.alive.add(job_id)
                        self.say(f"job {job_id}: left to {worker}, which is alive (it renews "
                                 "its lease)")
                        continue
                soonest = until if soonest is None else min(soonest, until)
        return None if soonest is None else max(0.0, soonest - now)


def work(queue: Queue, slots: int = 1, lease: float = 30.0, drain: bool = False,
         poll: float = 2.0, say=print, vet=None) -> None:
    """Run jobs until interrupted (or, with `drain`, until no job is runnable).

    A job's own failure fails that job and the worker goes on; a busy database is waited
    out with back-off; any other queue error stops every slot and is raised here.
    """
    name = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    fatal: list[BaseException] = []
    drainer = Drain(name + "/", say)

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
                    pause = drainer.wait(own) if drain else poll
                    if pause is None:
                        if k == 0:
                            for line in blocked_note(own):
                                say(line)
                        return
                    time.sleep(min(poll, pause + 0.05))
                    continue
                say(f"job {job.id}: {job.kind} (attempt {job.attempts}) on slot {k}")
                state = run_job(own, job, f"{name}/{k}", lease, env, vet)
                say(outcome(own, job.id, state))
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
