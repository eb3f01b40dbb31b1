"""`dream queue` and `dream worker`: the job queue's commands, and the vetting of a queued
job's arguments (parsed exactly as `dream render` / `dream zoom` parse them)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
from pathlib import Path

from renderer.cli import video
from renderer.cli.common import Parser, number
from renderer.errors import UserError

ID_MAX = 2**63 - 1


def register(sub) -> None:
    q = sub.add_parser("queue", help="queue render and zoom jobs for `dream worker`",
                       description="A crash-safe job queue (SQLite). Jobs run on `dream worker`.")
    q.add_argument("--db", default=None, help="queue database (default: "
                   "$DREAM_QUEUE or ~/.local/share/dream/queue.db)")
    qs = q.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    add = qs.add_parser("add", help="add a job: dream queue add [options] render|zoom ARGS...")
    add.add_argument("--priority", type=number(int, -10**6, 10**6), default=0,
                     help="higher runs first")
    add.add_argument("--at", default=None, help="not before this time (HH:MM: the next one; or "
                                               "an ISO datetime, which must be in the future)")
    add.add_argument("--after", type=number(int, 1, ID_MAX), default=None,
                     help="only after job N is done")
    add.add_argument("kind", choices=["render", "zoom"])
    add.add_argument("args", nargs=argparse.REMAINDER, help="the render or zoom arguments")
    for action in ("show", "cancel", "retry", "logs"):
        p = qs.add_parser(action, help=f"{action} one job")
        p.add_argument("id", type=number(int, 1, ID_MAX))
        if action == "show":
            p.add_argument("--json", action="store_true", help="the job as a JSON object")
        if action == "retry":
            p.add_argument("--fresh", action="store_true",
                           help="drop its checkpoint and start over (a damaged checkpoint)")
    p = qs.add_parser("list", help="every job with its state, frames, fps and ETA")
    p.add_argument("--json", action="store_true", help="the jobs as a JSON array")
    q.set_defaults(run=cmd_queue)

    w = sub.add_parser("worker", help="run queued jobs",
                       description="Claim and run jobs from the queue; several workers can "
                                   "share one queue. Killed workers' jobs are resumed by others.")
    w.add_argument("--db", default=None, help="queue database")
    w.add_argument("--gpus", type=number(int, 1, 64), default=1,
                   help="jobs at once, one per GPU")
    w.add_argument("--lease", type=number(float, 2, 86400), default=30.0,
                   help="seconds before a silent worker's job is taken over (2..86400)")
    w.add_argument("--root", dest="roots", action="append", default=[], metavar="DIR",
                   help="a folder whose jobs this worker runs: their folders, inputs, outputs, "
                        "presets and weights must lie inside one (repeatable; default: the "
                        "current folder)")
    w.add_argument("--trust-jobs", action="store_true",
                   help="run every job as it is queued, even one that names an ffmpeg binary "
                        "or paths outside the --root folders (only for a queue database that "
                        "nobody else can write)")
    w.add_argument("--drain", action="store_true",
                   help="exit when no job is runnable, nor will be by waiting (a dead "
                        "worker's lease is waited out and its job taken over; a live "
                        "worker's job is left to it)")
    w.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="dispatch jobs to a Ray cluster (pip install .[ray]), one GPU per task")
    w.add_argument("--gpus-per-task", type=number(float, 0, 64), default=1.0,
                   help="with --ray: GPUs per job (0 runs on CPU nodes)")
    w.add_argument("--ray-resources", default=None, metavar="JSON",
                   help='with --ray: custom resources each job needs, e.g. \'{"studio": 1}\'')
    w.add_argument("--split", type=number(int, 1, 256), default=None, metavar="N",
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
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--at '{text}' is not a time: use HH:MM or 2026-11-27T02:00") from None
    if at.timestamp() < now.timestamp() - 60:
        raise UserError(f"--at {text} is in the past: give a time to come, or leave --at out "
                        "to run the job as soon as a worker is free")
    return at.timestamp()


def parse_job_args(kind: str, args: list[str]) -> argparse.Namespace:
    """A job's arguments as the command itself parses them."""
    parser = Parser(prog="dream")
    video.register(parser.add_subparsers(dest="command", required=True))
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args([kind, *args])
    except SystemExit:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        reason = lines[-1].removeprefix("error: ") if lines else " ".join(args)
        raise UserError(f"invalid {kind} arguments: {reason}") from None


def check_job_args(kind: str, args: list[str]) -> None:
    """Check the job as the command will when it starts (paths, preset, sizes, output), so a
    typo fails here and not at 3 a.m."""
    parsed = parse_job_args(kind, args)
    parsed.check(parsed)


def vet_job(job, roots: list[Path]) -> str | None:
    """Why a worker refuses a queued job, or None. Anyone who can write the queue database
    chooses a job's arguments: a job may name no ffmpeg binary, and its folder and every file
    it names must lie inside the worker's roots."""
    from renderer import presets

    cwd = Path(job.cwd)
    if not cwd.is_absolute():
        return f"its folder '{job.cwd}' is not an absolute path"
    try:
        args = parse_job_args(job.kind, job.args)
    except UserError as exc:
        return str(exc)
    paths = [".", args.output, getattr(args, "input", None), getattr(args, "audio", None)]
    if getattr(args, "init", "noise") != "noise":
        paths.append(args.init)
    overrides = getattr(args, "overrides", [])
    if any(o.partition("=")[0].strip() == "encode.ffmpeg" for o in overrides):
        return "it names an ffmpeg binary (encode.ffmpeg)"
    name = args.preset
    if name and (name.endswith((".yaml", ".yml")) or os.sep in name):
        paths.append(name)
        name = str(cwd / name)
    try:
        preset = presets.load(name, overrides) if name else presets.defaults(overrides)
    except UserError as exc:
        return f"its preset does not load ({exc})"
    if preset.encode.ffmpeg:
        return f"its preset names an ffmpeg binary (encode.ffmpeg: {preset.encode.ffmpeg})"
    try:
        paths += [getattr(args, "mask", None), getattr(args, "schedule", None),
                  getattr(args, "controls", None),
                  *preset.files()]
    except UserError as exc:
        return f"a shot's preset does not load ({exc})"
    for path in filter(None, paths):
        resolved = (cwd / path).resolve()
        if not any(resolved == root or root in resolved.parents for root in roots):
            return (f"'{resolved}' is outside the worker's folders ({', '.join(map(str, roots))}): "
                    "start the worker with --root for that folder")
    return None


def cmd_queue(args) -> None:
    from rich.table import Table

    from renderer.jobs.queue import Queue
    from renderer.cli.bars import print_table

    queue = Queue(args.db)
    action = args.queue_command
    if action == "add":
        if not args.args:
            raise UserError(f"give the {args.kind} arguments, e.g. dream queue add render "
                            "IN.mp4 -p video -o OUT.mp4")
        at = parse_at(args.at) if args.at else 0.0
        check_job_args(args.kind, args.args)
        job_id = queue.add(args.kind, args.args, os.getcwd(), args.priority, at, args.after)
        print(f"queued job {job_id}")
    elif action == "list" and args.json:
        jobs = {job.id: job for job in queue.jobs()}
        print(json.dumps([job_record(job, jobs) for job in jobs.values()], indent=1))
    elif action == "list":
        table = Table(title=f"queue {queue.path}")
        for col in ("id", "state", "kind", "prio", "frames", "fps", "eta", "tries", "args"):
            table.add_column(col)
        jobs = {job.id: job for job in queue.jobs()}
        for job in jobs.values():
            frames = f"{job.frames_done}/{job.frames_total}" if job.frames_total else "-"
            eta = f"{job.eta:.0f}s" if job.eta is not None else "-"
            table.add_row(str(job.id), job.status(jobs), job.kind, str(job.priority), frames,
                          f"{job.fps:.2f}" if job.fps else "-", eta, str(job.attempts),
                          " ".join(job.args)[:60] if job.args is not None else "(damaged)")
        print_table(table)
        notes = [f"job {job.id}: {job.error}" for job in jobs.values() if job.state == "failed"]
        if any(job.stale() for job in jobs.values()):
            notes.append("stale: its worker stopped reporting (killed, or its machine is gone); "
                         "the next worker takes the job over and resumes it")
        for note in notes:
            print(note)
    elif action == "show":
        job = queue.get(args.id)
        record = job_record(job, {j.id: j for j in queue.jobs()})
        if args.json:
            print(json.dumps(record, indent=1))
        else:
            for key, value in record.items():
                print(f"{key}: {value}")
    elif action == "cancel":
        queue.cancel(args.id)
        print(f"cancelled job {args.id}")
    elif action == "retry":
        queue.retry(args.id, args.fresh)
        print(f"job {args.id} queued again" + (" (starting over)" if args.fresh else ""))
    elif action == "logs":
        queue.get(args.id)
        log = queue.log_file(args.id)
        if not log.is_file():
            raise UserError(f"job {args.id} has no log yet (it has not started)")
        print(log.read_text(errors="replace"), end="")


def job_record(job, jobs: dict) -> dict:
    """A job as plain data, for `show` and `--json`, with the state `list` shows (`status`)."""
    return dict(vars(job), status=job.status(jobs), eta=job.eta)


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
    from renderer.jobs.queue import Queue
    from renderer.jobs.workers import work
    from renderer.cli.bars import console

    queue = Queue(args.db)
    roots = [Path(r).resolve() for r in args.roots or ["."]]
    for root in roots:
        if not root.is_dir():
            raise UserError(f"--root '{root}' is not a folder")
    vet = None if args.trust_jobs else (lambda job: vet_job(job, roots))

    def say(text):
        console.print(text)

    if args.ray:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UserError("--ray needs Ray: pip install '.[ray]'")
        from renderer.jobs.ray import work_on_ray

        resources = parse_resources(args.ray_resources)
        work_on_ray(queue, args.ray, args.gpus_per_task, args.lease, args.drain,
                    resources=resources, split=args.split, say=say, vet=vet)
        return
    work(queue, args.gpus, args.lease, args.drain, say=say, vet=vet)
