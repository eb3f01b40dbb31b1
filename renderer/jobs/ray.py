"""Many machines: queued jobs run as Ray tasks, one GPU each, retried when a node dies.

The driver claims jobs from the SQLite queue exactly as a local worker does (same lease and
heartbeat), and hands each to Ray as a task with `num_gpus` (Ray sets CUDA_VISIBLE_DEVICES).
A video render is split into parts, runs of consecutive segments (`dream render --part K/N`),
one task each; a last task that depends on all of them joins the parts in order
(`--assemble N`). Every task runs with --resume on the shared filesystem, so a task that Ray
retries after its node died continues from its last checkpoint instead of starting over.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace

from renderer.jobs.child import start_child
from renderer.jobs.progress import PROGRESS_ENV, read_progress
from renderer.jobs.queue import Job, Queue
from renderer.jobs.workers import Drain, blocked_note, failure, fence_env, job_command, outcome


def _run_command(command: list[str], cwd: str, log: str, label: str, progress: str | None,
                 fence: dict, *parts: int) -> int:
    """The Ray task body: run one render command in a child process, return its exit code.

    The render reports its progress into the file `progress`. `parts` are the exit codes of
    the tasks this one waits for (Ray passes their results in); if one of them failed there is
    nothing to join and this task fails too.
    """
    if any(parts):
        return next(code for code in parts if code)
    env = dict(fence, **({PROGRESS_ENV: progress} if progress else {}))
    return start_child(command, cwd, log, f"ray task ({label}) on {os.uname().nodename} pid "
                                          f"{os.getpid()}", env).wait()


@dataclass
class _Dispatched:
    """A job on Ray: all its tasks (the last one's result is the job's), the task slots it
    holds and the progress files of its renders."""
    job: Job
    tasks: list
    slots: int
    progress: list[str] = field(default_factory=list)
    cancelled: bool = False


def task_slots(totals: dict, gpus_per_task: float, resources: dict) -> int:
    """How many tasks the cluster runs at once: the scarcest resource a task needs decides."""
    needs = {"GPU": gpus_per_task} if gpus_per_task else {"CPU": 1.0}
    needs.update(resources)
    return max(1, int(min(totals.get(name, 0.0) // amount for name, amount in needs.items())))


def work_on_ray(queue: Queue, address: str, gpus_per_task: float = 1.0, lease: float = 30.0,
                drain: bool = False, max_retries: int = 3, resources: dict | None = None,
                split: int | None = None, say=print, vet=None) -> None:
    """Dispatch queued jobs to a Ray cluster until interrupted (or drained).

    Render jobs are split into `split` parts (default: as many as the cluster runs tasks at
    once); zoom jobs, one feedback chain, run whole.
    """
    import ray

    ray.init(address=address, log_to_driver=False)
    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(_run_command)
    resources = resources or {}
    name = f"ray:{address}:{os.getpid()}"
    running: dict[object, _Dispatched] = {}  # ObjectRef of the job's last task -> job
    logs = queue.path.parent / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()
    drainer = Drain(name, say)

    def beat():  # keep the leases of dispatched jobs alive, record progress, notice cancels
        own = Queue(queue.path)
        while not stop.wait(min(1.0, lease / 4)):
            for item in list(running.values()):
                if not own.heartbeat(item.job, lease, read_progress(item.progress)):
                    item.cancelled = True

    threading.Thread(target=beat, daemon=True).start()
    capacity = task_slots(ray.cluster_resources(), gpus_per_task, resources)
    parts = split or capacity
    render_task = task.options(num_gpus=gpus_per_task, resources=resources)
    join_task = task.options(num_gpus=0, resources=resources)

    def dispatch(job: Job) -> _Dispatched | None:
        refusal = "its arguments are not a JSON list of strings" if job.args is None else \
            vet(job) if vet else None
        if refusal:
            queue.finish(job, "failed", f"refused: {refusal}")
            say(outcome(queue, job.id, "failed"))
            return None
        log = str(queue.log_file(job.id))
        queue.set_log(job.id, log)
        fence = fence_env(queue, job)
        if job.fresh:
            queue.started_fresh(job)
        whole = job.kind != "render" or parts == 1 or \
            {"--part", "--shard", "--assemble"} & set(job.args)
        if whole:  # a zoom, or a job that is already one part (or the joining) of a render
            progress = str(logs / f"job_{job.id}.progress.json")
            task = render_task.remote(job_command(job), job.cwd, log, job.kind, progress, fence)
            return _Dispatched(job, [task], 1, [progress])
        progress = [str(logs / f"job_{job.id}.part{k}.progress.json")
                    for k in range(1, parts + 1)]
        tasks = [render_task.remote(
            job_command(replace(job, args=[*job.args, "--part", f"{k}/{parts}"])), job.cwd,
            log, f"part {k}/{parts}", progress[k - 1], fence) for k in range(1, parts + 1)]
        join = join_task.remote(job_command(replace(job, args=[*job.args, "--assemble",
                                                               str(parts)])),
                                job.cwd, log, "assemble", None, fence, *tasks)
        return _Dispatched(job, [*tasks, join], parts, progress)

    try:
        while True:
            for ref, item in list(running.items()):
                if item.cancelled:  # `dream queue cancel`, or the lease was lost
                    for task in item.tasks:
                        ray.cancel(task, force=True)
                    del running[ref]
                    say(f"job {item.job.id}: cancelled, its Ray tasks stopped")
            while sum(item.slots for item in running.values()) < capacity and (
                    job := queue.claim(name, lease)) is not None:
                if (item := dispatch(job)) is None:
                    continue
                running[item.tasks[-1]] = item
                say(f"job {job.id}: dispatched to Ray" + (f" in {item.slots} parts"
                                                          if item.slots > 1 else ""))
            if not running:
                pause = drainer.wait(queue) if drain else 2.0
                if pause is None:
                    for line in blocked_note(queue):
                        say(line)
                    return
                time.sleep(min(2.0, pause + 0.05))
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=2.0)
            for ref in done:
                job = running.pop(ref).job
                try:
                    code = ray.get(ref)
                except Exception as exc:  # retries exhausted (node lost for good)
                    queue.finish(job, "failed", f"ray: {type(exc).__name__}")
                    say(outcome(queue, job.id, "failed"))
                    continue
                if code and not queue.heartbeat(job, lease, {}):  # its fence stopped it
                    say(f"job {job.id}: cancelled, its Ray tasks stopped")
                    continue
                queue.finish(job, "done" if code == 0 else "failed",
                             None if code == 0 else failure(code, queue.log_file(job.id)))
                say(outcome(queue, job.id, "done" if code == 0 else "failed"))
    finally:
        stop.set()
        ray.shutdown()
