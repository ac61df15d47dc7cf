"""Sampling API: rebuild a trained task from its run directory and draw samples from it.

Output layout (shared with the rasterizer CLI and Google's ``numpy_bitmap`` files, so every
evaluator reads real and generated drawings alike): ``.npy`` holds uint8 ``(n, size*size)``,
row-major bitmaps, white (255) strokes on black (0). Next to it, ``<file>.json`` records the
run, checkpoint step, seed, class names and each row's label. ``.png`` writes one grid image.
Models of kind "strokes" also write their drawings as simplified-format ``<stem>.ndjson``.
The same run, seed, n and labels always give the same samples. An existing file of those
names is never replaced unless asked (``overwrite``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rasterize.drawings import write_ndjson
from rasterize.render import render
from sketchgen import outputs, runtime
from sketchgen.config import SAMPLE_SEED, shown
from sketchgen.errors import ConfigError, FieldError
from sketchgen.figures import save_grid
from sketchgen.models import registry
from sketchgen.models.task import Task
from sketchgen.training.checkpoints import read_checkpoint, restored_task
from sketchgen.training.config import config_from_mapping
from sketchgen.training.run_folder import RunFolder

CHECKPOINTS = ("last", "best")  # which of a run's checkpoints load_run reads
SAMPLE_CHUNK = 250  # samples per forward pass: bounds memory for n in the millions
OUTPUT_SUFFIXES = (".npy", ".png")
# Samples are held in memory before they are written: 10^6 at 28 px is 784 MB (at 64 px 4 GB).
MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class LoadedRun:
    task: Task
    kind: str  # "bitmap" or "strokes"
    size: int
    class_names: tuple[str, ...]
    step: int  # the checkpoint's step
    run_dir: Path


def load_run(run_dir: str | Path, device: str = runtime.DEVICE, checkpoint: str = "last"
             ) -> LoadedRun:
    """The task of a run rebuilt from one of its checkpoints (no training data needed):
    ``checkpoint`` "last" (``checkpoint.pt``) or "best" (``best.pt``, the lowest validation
    score: ``sketchgen.training.validation``)."""
    if checkpoint not in CHECKPOINTS:
        raise FieldError("checkpoint", f"must be one of {', '.join(map(repr, CHECKPOINTS))}, "
                                       f"got {shown(checkpoint)}")
    run = RunFolder(run_dir)
    path = run.checkpoint if checkpoint == "last" else run.best_checkpoint
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {path.name}; is it a run folder of train"
                          + (" with validation?" if checkpoint == "best" else "?"))
    stored = read_checkpoint(path)  # layout, configs and sizes checked; nothing built yet
    config = config_from_mapping(stored["config"])
    # every weight's shape checked, then loaded
    task = restored_task(stored, config, runtime.choose_device(device), path)
    return LoadedRun(task, registry.get_model(stored["model"]).kind, config.size,
                     tuple(stored["class_names"]), stored["step"], run.path)


def sample_labels(run: LoadedRun, n: int, category: str | None = None) -> torch.Tensor:
    """``category``'s index n times, or (no category) classes in turn: 0, 1, ..., 0, 1, ..."""
    if category is None:
        return torch.arange(n) % len(run.class_names)
    if not run.task.conditional:
        raise ConfigError(f"{run.run_dir} holds an unconditional model; it cannot be asked "
                          "for a category")
    if category not in run.class_names:
        raise ConfigError(f"category {category!r} is not one this run was trained on: "
                          f"{', '.join(run.class_names)}")
    return torch.full((n,), run.class_names.index(category), dtype=torch.int64)


def _chunks(labels: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(labels, SAMPLE_CHUNK))


def sample_images(run: LoadedRun, labels: torch.Tensor, seed: int = SAMPLE_SEED) -> np.ndarray:
    """uint8 (n, size, size) for the given labels; the same seed gives the same images."""
    if not len(labels):
        return np.zeros((0, run.size, run.size), np.uint8)
    return task_images(run.task, labels, seed)


def task_images(task: Task, labels: torch.Tensor, seed: int) -> np.ndarray:
    """uint8 (n, size, size) from a live task (a run being trained, or a loaded one), in
    chunks of ``SAMPLE_CHUNK`` from one generator of ``seed``; ``labels`` not empty."""
    generator = torch.Generator().manual_seed(seed)
    return np.concatenate([task.sample(len(part), part, generator).numpy()
                           for part in _chunks(labels)])


def sample_drawings(run: LoadedRun, labels: torch.Tensor, seed: int = SAMPLE_SEED
                    ) -> list[Any]:
    """Drawings (strokes) from a "strokes" model; same seed, same drawings."""
    generator = torch.Generator().manual_seed(seed)
    return [drawing for part in _chunks(labels)
            for drawing in run.task.sample_drawings(len(part), part, generator)]


def check_request(n: int, out: str | Path) -> None:
    """Refuse a bad count or output before any work."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise FieldError("n", f"must be an integer in [1, {MAX_SAMPLES:_}], got {n!r}")
    if any(ord(char) < 32 for char in str(out)):
        raise FieldError("out", f"must be a path without NUL or control characters, got {out!r}")
    if Path(out).suffix not in OUTPUT_SUFFIXES:
        raise FieldError("out", f"must end in {' or '.join(OUTPUT_SUFFIXES)}, "
                                f"got {Path(out).name!r}")


def output_files(out: str | Path, kind: str) -> list[Path]:
    """The files ``write_samples`` writes for ``out`` from a run of ``kind``: the bitmaps
    (.npy, and its labels in .npy.json) or the grid (.png); a "strokes" model's drawings."""
    out = Path(out)
    return ([out] + ([_labels_file(out)] if out.suffix == ".npy" else [])
            + ([_drawings_file(out)] if kind == "strokes" else []))


def _labels_file(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _drawings_file(out: Path) -> Path:
    return out.with_suffix(".ndjson")


def _draw(run: LoadedRun, labels: torch.Tensor, seed: int) -> tuple[np.ndarray, list | None]:
    """The sampled bitmaps, and a strokes model's drawings they were rendered from (else None)."""
    if run.kind != "strokes":
        return sample_images(run, labels, seed), None
    drawings = sample_drawings(run, labels, seed)
    return render(drawings, size=run.size), drawings


def write_samples(run: LoadedRun, n: int, out: str | Path, category: str | None = None,
                  seed: int = SAMPLE_SEED, overwrite: bool = False) -> list[Path]:
    """Sample ``n`` drawings and write them to ``out`` (.npy or .png); returns the files.
    A file it would write that exists already is an ``outputs.OutputError`` before any
    sampling (and again once sampled: one may have appeared meanwhile), unless ``overwrite``."""
    out = Path(out)
    check_request(n, out)
    outputs.check_free(output_files(out, run.kind), overwrite)
    labels = sample_labels(run, n, category)
    images, drawings = _draw(run, labels, seed)
    outputs.check_free(output_files(out, run.kind), overwrite)  # again, after minutes maybe
    written = []
    if drawings is not None:
        written.append(runtime.atomic_write(_drawings_file(out),
                                            lambda tmp: write_ndjson(drawings, tmp)))
    if out.suffix == ".png":
        written.insert(0, save_grid(images, out))
        return written
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    written.insert(0, runtime.atomic_write(out, lambda tmp: _save_npy(tmp, flat)))
    meta = {"run": str(run.run_dir), "step": run.step, "seed": seed, "size": run.size,
            "layout": "uint8 (n, size*size), white strokes on black",
            "class_names": list(run.class_names), "labels": labels.tolist()}
    written.insert(1, runtime.atomic_write(
        _labels_file(out), lambda tmp: tmp.write_text(json.dumps(meta) + "\n")))
    return written


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:  # a file object: np.save would append ".npy" to a name
        np.save(handle, array)
