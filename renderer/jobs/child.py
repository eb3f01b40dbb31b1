"""Renders run as child processes of their worker (a local slot or a Ray task): one way to start
them, with their output appended to the job's log and their life tied to the worker's."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess


def die_with_parent() -> None:
    """Linux: the render dies with its worker, so a reclaimed job never runs twice."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_child(command: list[str], cwd: str, log: str | os.PathLike, header: str,
                env: dict) -> subprocess.Popen:
    """Start `command` in `cwd` with `env` added to ours, stdout and stderr appended to `log`
    after a `--- header` line. Raises OSError when it cannot start (a missing folder)."""
    with open(log, "a") as out:
        out.write(f"--- {header}\n")
        out.flush()
        return subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT,
                                env=dict(os.environ, **env), preexec_fn=die_with_parent)
