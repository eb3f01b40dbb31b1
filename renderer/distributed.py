"""Many machines: queued jobs run as Ray tasks, one GPU each, retried when a node dies.

The driver claims jobs from the SQLite queue exactly as a local worker does (same lease and
heartbeat), and hands each to Ray as a task with `num_gpus` (Ray sets CUDA_VISIBLE_DEVICES).
A video render is split into parts, runs of consecutive segments (`dream render --shard K/N`),
one task each; a last task that depends on all of them joins the parts in order
(`--assemble N`). Every task runs with --resume on the shared filesystem, so a task that Ray
retries after its node died continues from its last checkpoint instead of starting over.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from .jobs import Queue, die_with_parent, job_command


def _run_command(kind: str, args: list[str], cwd: str, log: str, label: str, *parts: int) -> int:
    """The Ray task body: run one render command in a child process, return its exit code.

    `parts` are the exit codes of the tasks this one waits for (Ray passes their results in);
    if one of them failed there is nothing to join and this task fails too.
    """
    if any(parts):
        return next(code for code in parts if code)
    command = job_command(kind, args)
    with open(log, "a") as out:
        out.write(f"--- ray task ({label}) on {os.uname().nodename} pid {os.getpid()}\n")
        out.flush()
        return subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                              preexec_fn=die_with_parent).returncode


def task_slots(totals: dict, gpus_per_task: float, resources: dict) -> int:
    """How many tasks the cluster runs at once: the scarcest resource a task needs decides."""
    needs = {"GPU": gpus_per_task} if gpus_per_task else {"CPU": 1.0}
    needs.update(resources)
    return max(1, int(min(totals.get(name, 0.0) // amount for name, amount in needs.items())))


def work_on_ray(queue: Queue, address: str, gpus_per_task: float = 1.0, lease: float = 30.0,
                drain: bool = False, max_retries: int = 3, resources: dict | None = None,
                split: int | None = None, say=print) -> None:
    """Dispatch queued jobs to a Ray cluster until interrupted (or drained).

    Render jobs are split into `split` parts (default: as many as the cluster runs tasks at
    once); zoom jobs, one feedback chain, run whole.
    """
    import ray

    ray.init(address=address, log_to_driver=False)
    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(_run_command)
    resources = resources or {}
    name = f"ray:{address}:{os.getpid()}"
    running: dict = {}  # ObjectRef of the job's last task -> (job, task slots it holds)
    logs = queue.path.parent / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()

    def beat():  # keep the leases of dispatched jobs alive
        own = Queue(queue.path)
        while not stop.wait(min(1.0, lease / 4)):
            for job, _ in list(running.values()):
                own.heartbeat(job.id, name, lease, {})

    threading.Thread(target=beat, daemon=True).start()
    capacity = task_slots(ray.cluster_resources(), gpus_per_task, resources)
    parts = split or capacity
    render_task = task.options(num_gpus=gpus_per_task, resources=resources)
    join_task = task.options(num_gpus=0, resources=resources)

    def dispatch(job) -> tuple:
        log = str(logs / f"job_{job.id}.log")
        queue.set_log(job.id, log)
        if job.kind != "render" or parts == 1:
            return render_task.remote(job.kind, job.args, job.cwd, log, job.kind), 1
        shards = [render_task.remote(job.kind, [*job.args, "--shard", f"{k}/{parts}"], job.cwd,
                                     log, f"part {k}/{parts}") for k in range(1, parts + 1)]
        return join_task.remote(job.kind, [*job.args, "--assemble", str(parts)], job.cwd, log,
                                "assemble", *shards), parts

    try:
        while True:
            while sum(n for _, n in running.values()) < capacity and (
                    job := queue.claim(name, lease)) is not None:
                ref, slots = dispatch(job)
                running[ref] = (job, slots)
                say(f"job {job.id}: dispatched to Ray" + (f" in {slots} parts" if slots > 1
                                                          else ""))
            if not running:
                if drain:
                    return
                time.sleep(2.0)
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=2.0)
            for ref in done:
                job, _ = running.pop(ref)
                try:
                    code = ray.get(ref)
                except Exception as exc:  # retries exhausted (node lost for good)
                    queue.finish(job.id, name, "failed", f"ray: {type(exc).__name__}")
                    say(f"job {job.id}: failed on Ray")
                    continue
                queue.finish(job.id, name, "done" if code == 0 else "failed",
                             None if code == 0 else f"exit {code}")
                say(f"job {job.id}: {'done' if code == 0 else 'failed'}")
    finally:
        stop.set()
        ray.shutdown()
