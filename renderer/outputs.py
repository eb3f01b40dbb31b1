"""Where results land: checks made before any work, one writer per output, atomic publishing.

The rules: an output is never one of the inputs; a path we did not create is never deleted
(a folder output carries a manifest of the files we wrote, and only those are ever removed);
files appear whole (written beside, then renamed) with the user's normal permissions; one
render at a time writes an output (an exclusive lock for the render's lifetime).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

from renderer.errors import BusyError, UserError
from renderer.fence import fenced

MANIFEST = ".dream-output.json"  # in a folder output: the files dream wrote there


def default_mode() -> int:
    """0666 less the process umask: what a file created with open() would get. Read from
    /proc where it can be: setting the umask to read it would, for that instant, let files
    that other threads create (encoders, checkpoints) be made without it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def refuse_same_file(output: Path, *inputs) -> None:
    """Exit 2 when the output is one of the inputs (resolved paths, hard links, symlinks), or
    would replace a file in an input folder (a mask folder's frames)."""
    for given in inputs:
        if given is None or str(given) in ("noise", ""):
            continue
        source = Path(given)
        same = source.resolve() == output.resolve()
        if not same and source.exists() and output.exists():
            same = os.path.samefile(source, output)
            if source.is_dir() and output.resolve().parent == source.resolve():
                raise UserError(f"output '{output}' is a file of the input folder '{given}': "
                                "write the result to another folder")
        if same:
            raise UserError(f"output '{output}' is the input '{given}': write the result to "
                            "another file")


def check_writable(folder: Path) -> None:
    """Try it: permissions, read-only file systems and root's exceptions are all covered."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".dream-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"output folder '{folder}' is not writable ({exc.strerror or exc}): "
                        "choose another output folder") from None


def check_target(path: Path, overwrite: bool, folder_output: bool = False) -> Path:
    """A writable folder; an existing output only with `overwrite` (and a folder output only
    if it holds nothing but what dream wrote there)."""
    if not path.parent.is_dir():
        raise UserError(f"output folder '{path.parent}' does not exist: create it first")
    check_writable(path.parent)
    if not (path.exists() or path.is_symlink()):
        return path
    if not overwrite:
        raise UserError(f"output '{path}' already exists: pass --overwrite to replace it")
    if folder_output:
        if not path.is_dir() or path.is_symlink():
            raise UserError(f"output '{path}' is a file, and codec png writes a folder of "
                            "frames: give a new folder name")
        stray = sorted(set(os.listdir(path)) - set(owned_files(path)))
        if stray:
            raise UserError(f"output folder '{path}' holds files dream did not write "
                            f"({stray[0]}{', ...' if len(stray) > 1 else ''}): give a new or "
                            "empty folder name")
    elif path.is_dir():
        raise UserError(f"output '{path}' is a folder: give a file name")
    return path


WORK_MARKER = ".dream-work"  # in every folder a render creates for itself


def check_name(path: Path) -> Path:
    """A path a render may write: a plain name, no symlink loop on the way, and not inside a
    render's work folder (which that render deletes when it finishes)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in str(path)):
        raise UserError(f"output {str(path)!r} has a control character (a newline?) in its "
                        "name: give a plain file name")
    try:
        resolved = path.resolve()
        resolved.exists()
    except (RuntimeError, OSError):
        raise UserError(f"output '{path}' is, or lies under, a symlink loop: give a real "
                        "path") from None
    for folder in resolved.parents:
        if folder.name.endswith(".work") and (folder / WORK_MARKER).exists():
            raise UserError(f"output '{path}' is inside '{folder}', a render's work folder "
                            "that it deletes when it finishes: write the output elsewhere")
    return path


def check_output(path: str | Path, overwrite: bool, inputs=(), folder_output: bool = False
                 ) -> Path:
    """The checks every command makes on its output before it starts working: a plain name
    outside any work folder, not one of the inputs, a writable folder, nothing replaced unless
    asked (and then only what is ours)."""
    path = check_name(Path(path))
    refuse_same_file(path, *inputs)
    return check_target(path, overwrite, folder_output)


# ---------------------------------------------------------------- folder outputs
def owned_files(folder: Path) -> list[str]:
    """The files a folder output's manifest says dream wrote (the manifest included)."""
    try:
        names = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [n for n in names if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")
            ] + [MANIFEST]


def write_manifest(folder: Path) -> None:
    """Record every file now in `folder` (a folder this render created) as ours."""
    names = sorted(n for n in os.listdir(folder) if n != MANIFEST)
    atomic_write(folder / MANIFEST, json.dumps({"files": names}), fence=False)


def remove_owned_folder(folder: Path) -> None:
    """Delete the files dream wrote into `folder`, then the folder if nothing else is left."""
    if not folder.exists():
        return
    for name in owned_files(folder):
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        raise UserError(f"output folder '{folder}' holds files dream did not write: "
                        "give a new or empty folder name") from None


# ---------------------------------------------------------------- atomic files
TEMP_MARK = "dreamtmp-"  # in the name of every file being written, so a cleanup knows its own
@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None, fence: bool = True,
                folder: Path | None = None):
    """Yield a new temporary path beside `path` (or in `folder`, on the same file system: a
    render's work folder, so a kill leaves nothing beside the output); it replaces `path` only
    if the block succeeds, with the user's normal permissions (not the temporary file's 0600).
    With `fence`, the rename is a commit of a queued job's work (see `renderer.fence`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{TEMP_MARK}", suffix=suffix or path.suffix,
                               dir=folder or path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        publish(Path(tmp), path, fence)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, data: str | bytes, fence: bool = True) -> None:
    """Write a whole file, or leave the old one: the one way small files are written."""
    with atomic_path(path, fence=fence) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)


def publish(tmp: Path, path: Path, fence: bool = True) -> None:
    """Rename a finished file (or folder) into place; under a queue job, only while its lease
    is still ours."""
    if tmp.is_file():
        os.chmod(tmp, default_mode())
    with fenced() if fence else nullcontext():
        os.replace(tmp, path)


# ---------------------------------------------------------------- one writer per output
class OutputLock:
    """An exclusive lock (flock) on a hidden file beside the output, for a render's lifetime.

    The file is removed on release; whoever locks re-checks that the path still names the file
    it locked, so a lock taken on a just-removed file is never trusted. A lock path that is a
    symlink, or a file with other names (a planted hard link), is never opened for writing: its
    PID would go into somebody's file.
    """

    def __init__(self, output: Path, scope: str = ""):
        self.output = output
        self.path = output.parent / f".{output.name}{'.' + scope if scope else ''}.lock"
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, default_mode())
            except OSError as exc:
                raise UserError(f"'{self.path}' beside the output is not dream's lock file "
                                f"({exc.strerror}: a symlink?): move it away, or choose another "
                                "output name") from None
            opened = os.fstat(fd)
            if opened.st_nlink != 1 or not stat.S_ISREG(opened.st_mode):
                os.close(fd)
                raise UserError(f"'{self.path}' beside the output is not dream's lock file (it "
                                "has other names): move it away, or choose another output name")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise BusyError(f"another render is writing '{self.output}' (pid {pid}): wait "
                                "for it to finish, or stop it") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it between our open and our lock: try again
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
