"""The run folder: the files one training run writes, named in one place.

``sketchgen.training.harness`` writes a run folder through :class:`RunFolder`; sampling,
comparisons, the API and the GPU check read it through the same object (or these names), so
the layout is known here only. Besides these files, a model may add figures at the end of a
run (``Task.figures``: ``<name>.png``), and ``sketchgen.outputs`` its marker. Its JSONL logs
are appended one record at a time (:func:`append_record`) and cut back to a checkpoint's step
on resume (:func:`truncate_records`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

from sketchgen.figures import read_jsonl
from sketchgen.runtime import ATOMIC_TEMPORARY, atomic_write
from sketchgen.training.checkpoints import read_checkpoint

CHECKPOINT = "checkpoint.pt"  # the latest good checkpoint of a run, replaced atomically
BEST_CHECKPOINT = "best.pt"  # the checkpoint of the lowest validation score (same format)
CONFIG = "config.toml"  # the run's TrainConfig; `sketchgen train --config` re-runs it
LOG = "log.jsonl"  # one JSON record per logged step
VALID_LOG = "valid.jsonl"  # one JSON record per validation (sketchgen.training.validation)
SAMPLES = "samples"  # grids from the fixed noise batch, samples/step_000250.png, ...
GIF = "learning.gif"  # those grids in step order
CURVES = "losses.png"  # loss and D-output curves from the log


@dataclass(frozen=True)
class RunFolder:
    """The files of the run in ``path`` (``RunFolder("runs/sngan")``); nothing is read or
    written until asked."""

    path: Path
    kind: ClassVar[str] = "run"  # the folder's kind in its sketchgen.outputs marker

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.path / BEST_CHECKPOINT

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def valid_log(self) -> Path:
        return self.path / VALID_LOG

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def gif(self) -> Path:
        return self.path / GIF

    @property
    def curves(self) -> Path:
        return self.path / CURVES

    def grid(self, step: int) -> Path:
        """The sample grid drawn at ``step``."""
        return self.samples / f"step_{step:06d}.png"

    def figures(self) -> list[Path]:
        """The run's own PNG figures, by name: the loss curves and any the model added."""
        return sorted(self.path.glob("*.png"))

    def grids(self, last_step: int) -> list[Path]:
        """The grids on disk up to ``last_step``, in step order (the GIF's frames)."""
        return [path for path in sorted(self.samples.glob("step_*.png"))
                if int(path.stem.split("_")[1]) <= last_step]

    def holds_unmarked_run(self) -> bool:
        """A run folder from before the suite marked its folders: a checkpoint and its
        config. Resumed as it is, never marked (it may hold files of the user's), never
        deleted."""
        return self.checkpoint.is_file() and self.config.is_file()

    def remove_temporaries(self) -> None:
        """Temp files of writes a kill interrupted (the real files are intact)."""
        for folder in (self.path, self.samples):
            for stale in folder.glob(ATOMIC_TEMPORARY):
                stale.unlink(missing_ok=True)

    def read_checkpoint(self) -> dict[str, Any]:
        """The run's checkpoint, checked through
        (:func:`sketchgen.training.checkpoints.read_checkpoint`); nothing is built."""
        return read_checkpoint(self.checkpoint)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One JSON line at the end of a run's log (NaN and infinities are written as null)."""
    with path.open("ab") as log:
        log.write(json_line(record))


def json_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def truncate_records(path: Path, last_step: int) -> list[dict[str, Any]]:
    """Drop the records of a run's log after ``last_step`` (a killed run may have logged past
    its checkpoint); returns the records kept."""
    if not path.exists():
        return []
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    text = b"".join(json_line(r) for r in kept)
    atomic_write(path, lambda tmp: tmp.write_bytes(text))
    return kept
