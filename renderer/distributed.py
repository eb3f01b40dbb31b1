"""Many machines: queued jobs run as Ray tasks, one GPU each, retried when a node dies.

The driver claims jobs from the SQLite queue exactly as a local worker does (same lease and
heartbeat), and hands each to Ray as a task with `num_gpus` (Ray sets CUDA_VISIBLE_DEVICES).
A task runs the render with --resume on the shared filesystem, so a task that Ray retries after
its node died continues from the render's last checkpoint instead of starting over.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from .jobs import Queue, die_with_parent, job_command


def _run_render(kind: str, args: list[str], cwd: str, log: str) -> int:
    """The Ray task body: run one job's render in a child process, return its exit code."""
    command = job_command(kind, args)
    with open(log, "a") as out:
        out.write(f"--- ray task on {os.uname().nodename} pid {os.getpid()}\n")
        out.flush()
        return subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                              preexec_fn=die_with_parent).returncode


def work_on_ray(queue: Queue, address: str, gpus_per_task: float = 1.0, lease: float = 30.0,
                drain: bool = False, max_retries: int = 3, resources: dict | None = None,
                say=print) -> None:
    """Dispatch queued jobs to a Ray cluster until interrupted (or drained)."""
    import ray

    ray.init(address=address, log_to_driver=False)
    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(_run_render)
    name = f"ray:{address}:{os.getpid()}"
    running: dict = {}  # ObjectRef -> job
    logs = queue.path.parent / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()

    def beat():  # keep the leases of dispatched jobs alive
        own = Queue(queue.path)
        while not stop.wait(min(1.0, lease / 4)):
            for job in list(running.values()):
                own.heartbeat(job.id, name, lease, {})

    threading.Thread(target=beat, daemon=True).start()
    capacity = max(1, int(ray.cluster_resources().get("GPU" if gpus_per_task else "CPU", 1)
                          // (gpus_per_task or 1)))
    try:
        while True:
            while len(running) < capacity and (job := queue.claim(name, lease)) is not None:
                log = str(logs / f"job_{job.id}.log")
                queue.set_log(job.id, log)
                ref = task.options(num_gpus=gpus_per_task, resources=resources or {}).remote(
                    job.kind, job.args, job.cwd, log)
                running[ref] = job
                say(f"job {job.id}: dispatched to Ray")
            if not running:
                if drain:
                    return
                time.sleep(2.0)
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=2.0)
            for ref in done:
                job = running.pop(ref)
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
