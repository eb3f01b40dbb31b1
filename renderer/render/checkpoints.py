"""Checkpoints of long renders: a work folder beside the output that a killed render resumes.

Nothing in it can run code: the commit point is `checkpoint.json` (fingerprint, step, finished
chunks and a SHA-256 of every file it names), the dream state is plain tensors loaded with
`torch.load(weights_only=True)`, and the fingerprint is checked before anything else is read.
A file that does not match its checksum (a truncated frame, a damaged state) is refused. The
folder carries a marker, and only folders with it are ever deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from renderer.errors import UserError
from renderer.outputs import TEMP_MARK, WORK_MARKER, atomic_write
from renderer.presets import MaskSection

log = logging.getLogger(__name__)


@dataclass
class RenderState:
    """What a render needs to continue after `step` steps (on the CPU, lossless)."""
    step: int = 0
    prev_dream: dict = field(default_factory=dict)  # segment -> (3, H, W) float tensor
    prev_rgb: dict = field(default_factory=dict)  # segment -> HxWx3 uint8 source frame
    # name -> segment -> tensor: the chain's optional per-row tensors (motion.chain.LINK_MAPS:
    # the hold's reference, the still map's age, the carried mask, a crossfade's fading look)
    maps: dict = field(default_factory=dict)


def work_dir(output: Path) -> Path:
    """The hidden work folder beside an output: chunks, parked frames, checkpoints, parts."""
    return output.parent / f".{output.name}.work"


def digest(*values) -> str:
    """A stable hash of JSON-able values: what must match for a checkpoint to be continued."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def mask_contents(mask: MaskSection) -> list[str]:
    """The checksums of a mask file (or of a mask folder's images): an edited mask is another
    render, which no checkpoint continues."""
    if mask.file is None:
        return []
    path = Path(mask.file)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [f"{f.name}:{file_sha256(f)}" for f in files if f.is_file()]


def refuse_link(folder: Path) -> None:
    """A work folder is a folder dream made, never a symlink to somebody's (it is written into
    and emptied)."""
    if folder.is_symlink():
        raise UserError(f"'{folder}' is a symlink, not a work folder dream made: move it away, "
                        "or choose another output name")


def make_work_folder(folder: Path) -> None:
    """Create a work folder (and a work parent, for a part of a split render), marked as ours."""
    for path in (folder.parent, folder) if folder.name.startswith("part_") else (folder,):
        refuse_link(path)
        if path.exists() and not (path / WORK_MARKER).exists() and any(path.iterdir()):
            raise UserError(f"'{path}' exists and was not made by dream: move it away, or "
                            "choose another output name")
        path.mkdir(exist_ok=True)
        (path / WORK_MARKER).touch()


# What renders write into a work folder (paths from it): nothing else in it is ever deleted.
WORK_FILES = re.compile(r"""(part_\d+of\d+/)?(
    checkpoint\.json | done\.json | concat\.txt | state_\d+\.pt | chunk_[\d_]+(\.\w+)?
  | seam_\d+\.\w+ | (frames | chunk_[\d_]+)/(frame_\d+\.(png|exr) | audio\.flac | \.dream-output\.json)
  | (fades | loop)/\w+\.npy
  | ([\w-]+/)*\.[^/]+\.""" + TEMP_MARK + r"""[a-z0-9_]{8}[^/]*  # being written (outputs.atomic_path)
)""", re.VERBOSE)


def remove_work_folder(folder: Path) -> None:
    """Delete what renders wrote into a work folder of ours, then the folder once it is empty.
    A file dream did not write is kept (with the folder and its marker), and named."""
    if not (folder / WORK_MARKER).exists():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        name = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif WORK_FILES.fullmatch(name) or (path.name == WORK_MARKER and path.parent != folder):
            path.unlink()
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.name != WORK_MARKER)
    if left:
        log.warning(f"kept '{folder}': it holds {left[0]}{' and more' if len(left) > 1 else ''}"
                    ", which dream did not write (move it away, then delete the folder)")
        return
    (folder / WORK_MARKER).unlink()
    folder.rmdir()


def _plain_name(name) -> bool:
    """A file name inside the work folder (never a path that leads out of it)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name


class Checkpoints:
    """A render's work folder: finished chunks, parked cross-fade frames and the checkpoint
    (written atomically), enough to resume a killed render exactly."""

    def __init__(self, output: Path, fingerprint: str, folder: Path | None = None):
        self.output = output
        self.folder = folder or work_dir(output)
        self.file = self.folder / "checkpoint.json"
        self.manifest = self.folder / "done.json"
        self.fingerprint = fingerprint
        self.sums: dict[str, str] = {}  # file (from the output's folder) -> SHA-256

    def _damaged(self, what: str) -> UserError:
        return UserError(f"the checkpoint of '{self.output}' is damaged ({what}): run again "
                         "without --resume")

    def start(self, resume: bool) -> tuple[RenderState, list[list[str]]] | None:
        """The saved state and chunks when resuming from a checkpoint; otherwise a clean work
        folder (an old one of ours is cleared) and None."""
        refuse_link(self.folder)
        restored = self.load() if resume else None
        if restored is None:
            remove_work_folder(self.folder)
            make_work_folder(self.folder)
        return restored

    def load(self) -> tuple[RenderState, list[list[str]]] | None:
        if not self.file.exists():
            if (self.folder / "checkpoint.pt").exists():
                raise UserError(f"the checkpoint in '{self.folder}' is of an older version and "
                                "is not loaded: run again without --resume")
            return None
        try:
            saved = json.loads(self.file.read_text())
            fingerprint, step = saved["fingerprint"], int(saved["step"])
            chunks, sums, state_file = saved["chunks"], saved["sha256"], saved["state"]
        except (OSError, ValueError, KeyError, TypeError):
            raise self._damaged("checkpoint.json cannot be read") from None
        if fingerprint != self.fingerprint:
            raise UserError(f"the checkpoint in '{self.folder}' belongs to a different render "
                            "(input, preset, size or seed changed): run without --resume")
        if not isinstance(sums, dict) or state_file not in sums:
            raise self._damaged("checkpoint.json names no state")
        for name, expected in sums.items():
            path = self.folder.parent / name
            if ".." in Path(name).parts or not path.is_file() or file_sha256(path) != expected:
                raise self._damaged(f"{name} is missing or changed")
        try:
            tensors = torch.load(self.folder.parent / state_file, map_location="cpu",
                                 weights_only=True)
        except Exception:
            raise self._damaged(f"{state_file} cannot be read") from None
        if isinstance(tensors, dict) and "reference" in tensors:  # before the rows' maps
            raise UserError(f"the checkpoint in '{self.folder}' is of an older version and is "
                            "not loaded: run again without --resume")
        try:
            state = RenderState(step, {int(k): v for k, v in tensors["prev_dream"].items()},
                                {int(k): v.numpy() for k, v in tensors["prev_rgb"].items()},
                                {name: {int(k): v for k, v in rows.items()}
                                 for name, rows in tensors.get("maps", {}).items()})
        except Exception:
            raise self._damaged(f"{state_file} cannot be read") from None
        self.sums = {k: v for k, v in sums.items() if k != state_file}
        if not (isinstance(chunks, list) and all(isinstance(names, list) and all(
                _plain_name(n) for n in names) for names in chunks)):
            raise self._damaged("its chunk list is not a list of file names")
        return state, chunks

    def save(self, state: RenderState, chunks: list[list[str]], written=()) -> None:
        """Write beside, then rename: a full disk or a kill keeps the previous checkpoint.
        `written` are the files finished since the last save: their checksums join the record."""
        state_name = f"state_{state.step:08d}.pt"
        state_file = f"{self.folder.name}/{state_name}"
        try:
            for path in written:  # keyed from the output's folder: zoom variants share one
                self.sums[str(Path(path).relative_to(self.folder.parent))] = file_sha256(path)
            torch.save({"prev_dream": {str(k): v.contiguous() for k, v in state.prev_dream.items()},
                        "prev_rgb": {str(k): torch.from_numpy(np.ascontiguousarray(v))
                                     for k, v in state.prev_rgb.items()},
                        "maps": {name: {str(k): v.contiguous() for k, v in rows.items()}
                                 for name, rows in state.maps.items()}},
                       self.folder / state_name)
            sums = dict(self.sums, **{state_file: file_sha256(self.folder / state_name)})
            atomic_write(self.file, json.dumps({"fingerprint": self.fingerprint, "step": state.step,
                                                "chunks": chunks, "state": state_file,
                                                "sha256": sums}))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UserError(f"could not write the checkpoint in '{self.folder}' ({reason}): "
                            "free some disk space, then run again with --resume") from None
        for old in self.folder.glob("state_*.pt"):
            if old.name != state_name:
                old.unlink(missing_ok=True)

    def finish(self, chunks: list[str]) -> None:
        """Mark a part finished: its chunks, in output order, for the assembly."""
        atomic_write(self.manifest, json.dumps({"fingerprint": self.fingerprint,
                                                 "chunks": chunks}))

    def finished(self) -> list[str] | None:
        """The chunks of a finished part of this render, or None."""
        if not self.manifest.exists():
            return None
        try:
            saved = json.loads(self.manifest.read_text())
            fingerprint, chunks = saved["fingerprint"], saved["chunks"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"'{self.manifest}' is damaged: render that part again without "
                            "--resume") from None
        if not (isinstance(chunks, list) and all(_plain_name(c) for c in chunks)):
            raise UserError(f"'{self.manifest}' is damaged: render that part again without "
                            "--resume")
        return chunks if fingerprint == self.fingerprint else None
