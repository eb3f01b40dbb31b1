"""CLI commands for the job queue and its workers (registered into the main parser)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os

from .errors import UserError


def register(sub) -> None:
    q = sub.add_parser("queue", help="queue render and zoom jobs for `dream worker`",
                       description="A crash-safe job queue (SQLite). Jobs run on `dream worker`.")
    q.add_argument("--db", default=None, help="queue database (default: "
                   "$DREAM_QUEUE or ~/.local/share/dream/queue.db)")
    qs = q.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    add = qs.add_parser("add", help="add a job: dream queue add [options] render|zoom ARGS...")
    add.add_argument("--priority", type=int, default=0, help="higher runs first")
    add.add_argument("--at", default=None, help="not before this time (HH:MM or ISO datetime)")
    add.add_argument("--after", type=int, default=None, help="only after job N is done")
    add.add_argument("kind", choices=["render", "zoom"])
    add.add_argument("args", nargs=argparse.REMAINDER, help="the render or zoom arguments")
    for action in ("show", "cancel", "retry", "logs"):
        p = qs.add_parser(action, help=f"{action} one job")
        p.add_argument("id", type=int)
    qs.add_parser("list", help="every job with its state, frames, fps and ETA")
    q.set_defaults(run=cmd_queue)

    w = sub.add_parser("worker", help="run queued jobs",
                       description="Claim and run jobs from the queue; several workers can "
                                   "share one queue. Killed workers' jobs are resumed by others.")
    w.add_argument("--db", default=None, help="queue database")
    w.add_argument("--gpus", type=int, default=1, help="jobs at once, one per GPU")
    w.add_argument("--lease", type=float, default=30.0,
                   help="seconds before a silent worker's job is taken over")
    w.add_argument("--drain", action="store_true", help="exit when no job is runnable")
    w.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="dispatch jobs to a Ray cluster (pip install .[ray]), one GPU per task")
    w.add_argument("--gpus-per-task", type=float, default=1.0,
                   help="with --ray: GPUs per job (0 runs on CPU nodes)")
    w.add_argument("--ray-resources", default=None, metavar="JSON",
                   help='with --ray: custom resources each job needs, e.g. \'{"studio": 1}\'')
    w.add_argument("--split", type=int, default=None, metavar="N",
                   help="with --ray: render each video job as N parts on N GPUs at once "
                        "(default: as many as the cluster runs; 1 keeps jobs whole)")
    w.set_defaults(run=cmd_worker)


def parse_at(text: str) -> float:
    now = datetime.datetime.now()
    try:
        if len(text) <= 5 and ":" in text:
            h, m = (int(v) for v in text.split(":"))
            at = now.replace(hour=h, minute=m, second=0, microsecond=0)
            return (at if at > now else at + datetime.timedelta(days=1)).timestamp()
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UserError(f"--at '{text}' is not a time: use HH:MM or 2026-11-27T02:00") from None


def check_job_args(kind: str, args: list[str]) -> None:
    """Parse the job's arguments now, so a typo fails here and not at 3 a.m."""
    from .cli import build_parser

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            build_parser().parse_args([kind, *args])
    except SystemExit:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        raise UserError(f"invalid {kind} arguments: {lines[-1] if lines else args}") from None


def cmd_queue(args) -> None:
    from rich.table import Table

    from .jobs import Queue
    from .progress import console

    queue = Queue(args.db)
    action = args.queue_command
    if action == "add":
        if not args.args:
            raise UserError(f"give the {args.kind} arguments, e.g. dream queue add render "
                            "IN.mp4 -p video -o OUT.mp4")
        check_job_args(args.kind, args.args)
        at = parse_at(args.at) if args.at else 0.0
        job_id = queue.add(args.kind, args.args, os.getcwd(), args.priority, at, args.after)
        print(f"queued job {job_id}")
    elif action == "list":
        table = Table(title=f"queue {queue.path}")
        for col in ("id", "state", "kind", "prio", "frames", "fps", "eta", "tries", "args"):
            table.add_column(col)
        for job in queue.jobs():
            frames = f"{job.frames_done}/{job.frames_total}" if job.frames_total else "-"
            eta = f"{job.eta:.0f}s" if job.eta is not None and job.state == "running" else "-"
            table.add_row(str(job.id), job.state, job.kind, str(job.priority), frames,
                          f"{job.fps:.2f}" if job.fps else "-", eta, str(job.attempts),
                          " ".join(job.args)[:60])
        console.print(table)
    elif action == "show":
        job = queue.get(args.id)
        for key, value in vars(job).items():
            print(f"{key}: {value}")
    elif action == "cancel":
        queue.cancel(args.id)
        print(f"cancelled job {args.id}")
    elif action == "retry":
        queue.retry(args.id)
        print(f"job {args.id} queued again")
    elif action == "logs":
        job = queue.get(args.id)
        if not job.log or not os.path.exists(job.log):
            raise UserError(f"job {args.id} has no log yet (it has not started)")
        print(open(job.log).read(), end="")


def parse_resources(text: str | None) -> dict:
    """--ray-resources: a JSON object of resource names and positive amounts."""
    if not text:
        return {}
    try:
        resources = json.loads(text)
    except ValueError:
        resources = None
    if not isinstance(resources, dict) or not all(
            isinstance(v, (int, float)) and v > 0 for v in resources.values()):
        raise UserError(f"--ray-resources '{text}' is not a JSON object of positive amounts: "
                        'write e.g. \'{"studio": 1}\'')
    return resources


def cmd_worker(args) -> None:
    from .jobs import Queue, work
    from .progress import console

    if not 1 <= args.gpus <= 64:
        raise UserError(f"--gpus {args.gpus} is out of range: use 1..64")
    if args.lease < 2:
        raise UserError("--lease must be at least 2 seconds")
    queue = Queue(args.db)
    def say(text):
        console.print(text)

    if args.ray:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UserError("--ray needs Ray: pip install '.[ray]'")
        from .distributed import work_on_ray

        if args.split is not None and not 1 <= args.split <= 256:
            raise UserError(f"--split {args.split} is out of range: use 1..256")
        resources = parse_resources(args.ray_resources)
        work_on_ray(queue, args.ray, args.gpus_per_task, args.lease, args.drain,
                    resources=resources, split=args.split, say=say)
        return
    work(queue, args.gpus, args.lease, args.drain, say=say)
