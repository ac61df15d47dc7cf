"""The training harness shared by every model, and the Task protocol that models implement.

Division of work
----------------
The harness (``train``) owns everything that is the same for every model: seeding, device
choice, loading and caching the data, the loop, the progress bar, the JSONL log, per-layer
gradient norms every K steps, atomic checkpoints with RNG states, ``--resume``, sample grids
from a fixed noise batch, the learning GIF, loss curves and the divergence guard.

A *task* owns everything model-specific: its modules, optimizers, schedulers, EMA copies,
loss, and its own ``torch.Generator`` from which it draws batch indices, noise and
augmentation. A task is built by the factory of its registry entry (``sketchgen.models.registry``)
from a :class:`TaskInputs`.

Exact resume
------------
A checkpoint holds ``task.state_dict()`` plus the global python/numpy/torch RNG states
(``sketchgen.runtime.rng_state``), which cover anything the task cannot route through its
own generator (dropout). On CPU, N steps straight and k + resume + (N - k) steps give
bitwise identical weights as long as the task keeps all its state in ``state_dict`` and
``sample`` touches neither the global RNGs nor the task's generator.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from sketchgen.errors import DivergenceError
from sketchgen.models.task import BitmapData, Task, TaskInputs

if TYPE_CHECKING:  # torch is imported lazily by the functions that need it
    import torch

    from sketchgen.config import TrainConfig


# --- the harness -----------------------------------------------------------------------------

CHECKPOINT = "checkpoint.pt"  # the latest good checkpoint of a run, replaced atomically
LOG = "log.jsonl"  # one JSON record per logged step
CONFIG = "config.toml"  # the run's TrainConfig; `sketchgen train --config` re-runs it
SAMPLES = "samples"  # grids from the fixed noise batch, samples/step_000250.png, ...
GIF = "learning.gif"  # those grids in step order
CURVES = "losses.png"  # loss and D-output curves from the log
CHECKPOINT_FORMAT = 1  # bumped when the checkpoint layout changes incompatibly
RUN_KIND = "run"  # a run folder's kind in its sketchgen.outputs marker
# What atomic_write leaves when killed: "." + the file's name + 8 random characters + ".tmp"
STALE_TEMPORARY = ".?*.????????.tmp"
# Settings that may differ between a run and its resumption: they don't change the result.
RESUMABLE_CHANGES = ("steps", "out", "device", "progress", "checkpoint_every", "sample_every",
                     "log_every", "grad_norm_every")


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    step: int  # the last step taken
    metrics: dict[str, float]  # what train_step returned at that step (empty if none taken)


def check_categories(config: TrainConfig) -> None:
    """At least one category; unknown names fail with the data module's suggestions."""
    from sketchgen.data import datasets as data
    from sketchgen.errors import ConfigError

    if not config.categories:
        raise ConfigError("give at least one category (--categories cat dog ...)")
    try:
        data._source_list(config.categories)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def load_data(config: TrainConfig, kind: str, device: torch.device, given: Any | None = None
              ) -> tuple[Any, tuple[str, ...]]:
    """The training data for a model kind, and its class names.

    "bitmap": rasterized once (cached on disk by ``sketchgen.data.datasets``), then one uint8 tensor on
    the device. "strokes": ``sketchgen.data.datasets.load_drawings`` as it is; the task prepares it.
    ``given``: data already in memory (``train``'s ``data``), used instead of reading
    ``config.categories``.
    """
    import numpy as np
    import torch

    from sketchgen.data import datasets as data
    from sketchgen.errors import ConfigError

    try:
        if given is not None:
            loaded = _as_kind(given, kind, config.size)
        elif kind == "bitmap":
            loaded = data.load_bitmaps(config.categories, config.size,
                                       per_class=config.per_class, mirror=config.mirror)
        else:
            loaded = data.load_drawings(config.categories, per_class=config.per_class,
                                        mirror=config.mirror)
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(str(error)) from None
    class_names = tuple(loaded.class_names)
    empty = [name for i, name in enumerate(class_names) if not (loaded.labels == i).any()]
    if len(loaded) == 0 or empty:
        raise ConfigError(f"no drawings for {', '.join(empty) or 'any category'}")
    if kind != "bitmap":
        return loaded, class_names
    images = torch.from_numpy(np.ascontiguousarray(loaded.bitmaps)).to(device)
    labels = torch.from_numpy(np.asarray(loaded.labels, dtype=np.int64)).to(device)
    return BitmapData(images, labels, class_names), class_names


def _as_kind(given: Any, kind: str, size: int) -> Any:
    """Data passed in memory in the form ``kind`` trains on: drawings as they are, or bitmaps
    (drawings rendered once at ``size``, Google's geometry, as ``sketchgen.data.datasets`` renders)."""
    import numpy as np

    from rasterize.render import render
    from sketchgen.data.datasets import LabelledBitmaps, LabelledDrawings

    if isinstance(given, LabelledDrawings):
        if kind != "bitmap":
            return given
        return LabelledBitmaps(render(given.drawings, size=size), given.labels, given.class_names)
    if kind != "bitmap":
        raise ValueError("data: this model trains on strokes; give drawings (LabelledDrawings), "
                         "not bitmaps")
    images = np.asarray(given.bitmaps)
    if images.dtype != np.uint8 or images.shape[1:] != (size, size):
        raise ValueError(f"data: bitmaps of {images.dtype} {images.shape[1:]} do not fit "
                         f"size={size} (expected uint8 (N, {size}, {size}))")
    return given


def config_for_data(config: TrainConfig, given: Any) -> TrainConfig:
    """The run's config when ``train`` gets ``data`` (checked here, before any work): the
    data's class names as categories (recorded in config.toml, not read); per_class and
    mirror, which choose what is read, must be left unset."""
    import dataclasses

    import numpy as np

    from sketchgen.data.datasets import LabelledBitmaps, LabelledDrawings
    from sketchgen.errors import ConfigError

    if not isinstance(given, (LabelledDrawings, LabelledBitmaps)):
        raise ConfigError("data must be sketchgen.data.datasets.LabelledDrawings or LabelledBitmaps, "
                          f"got {type(given).__name__}")
    class_names, labels = tuple(given.class_names), np.asarray(given.labels)
    if (labels.shape != (len(given),) or not np.issubdtype(labels.dtype, np.integer)
            or (len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names))):
        raise ConfigError(f"data: expected {len(given)} integer labels indexing "
                          f"{len(class_names)} class names, got {labels.dtype} {labels.shape}")
    if config.per_class is not None or config.mirror is not None:
        raise ConfigError("per_class and mirror choose what is read from categories; with "
                          "data given, select the drawings beforehand (e.g. "
                          "sketchgen.data.datasets.load_drawings(sources, per_class=N))")
    if config.categories and config.categories != class_names:
        raise ConfigError(f"categories {list(config.categories)} differ from the data's class "
                          f"names {list(class_names)}; leave categories out when giving data")
    return dataclasses.replace(config, categories=class_names)


def data_fingerprint(given: Any) -> dict[str, Any]:
    """What identifies data passed in memory: its counts per class and a sha256 of labels
    and content (bitmaps, or every drawing's stroke lengths and points). Recorded in the
    checkpoint, so that a run is never resumed on other data."""
    import hashlib

    import numpy as np

    from sketchgen.data.datasets import LabelledBitmaps

    labels = np.asarray(given.labels, dtype=np.int64)
    digest = hashlib.sha256("\0".join(given.class_names).encode() + b"\0" + labels.tobytes())
    if isinstance(given, LabelledBitmaps):
        kind = "bitmaps"
        digest.update(np.ascontiguousarray(given.bitmaps).tobytes())
    else:
        kind = "drawings"
        for drawing in given.drawings:
            lengths = [len(drawing.strokes), *(len(stroke) for stroke in drawing.strokes)]
            digest.update(np.asarray(lengths, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(drawing.points(), dtype=np.float64).tobytes())
    per_class = np.bincount(labels, minlength=len(given.class_names)).tolist()
    return {"kind": kind, "count": len(labels), "per_class": per_class,
            "sha256": digest.hexdigest()}


def check_same_data(checkpoint: dict[str, Any], fingerprint: dict[str, Any] | None) -> None:
    """Refuse to resume a run on other data than it was trained on (``None``: read from the
    config's categories)."""
    from sketchgen.errors import ConfigError

    stored = checkpoint.get("data")
    if stored == fingerprint:
        return

    def described(value: dict[str, Any] | None) -> str:
        if value is None:
            return "the config's categories"
        try:
            return f"{value['count']} {value['kind']} given as data (sha256 {value['sha256'][:12]})"
        except (KeyError, TypeError):  # a checkpoint's record is any dict (stranger's files)
            return "other data (a record this version does not read)"

    raise ConfigError(f"cannot resume: the checkpoint was trained on {described(stored)}, "
                      f"not on {described(fingerprint)}")


def check_resumable(checkpoint: dict[str, Any], config: TrainConfig, given: Any | None = None
                    ) -> None:
    """Refuse (ConfigError naming what differs) to continue ``checkpoint`` (as
    ``sketchgen.training.checkpoints.read_checkpoint`` returns it) under ``config`` on ``given`` data
    (None: the config's categories): other settings that change the result, or other data."""
    _check_resumable(checkpoint["config"], config)
    check_same_data(checkpoint, None if given is None else data_fingerprint(given))


def grid_labels(count: int, num_classes: int, columns: int) -> torch.Tensor:
    """Labels for a sample grid: row r shows class r mod num_classes."""
    import torch

    return (torch.arange(count) // columns) % num_classes


class _Run:
    """The files of one run directory."""

    def __init__(self, out: str | Path) -> None:
        self.dir = Path(out)
        self.checkpoint = self.dir / CHECKPOINT
        self.log = self.dir / LOG
        self.samples = self.dir / SAMPLES

    def grid_path(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    def remove_temporaries(self) -> None:
        """Temp files of writes a kill interrupted (the real files are intact)."""
        for folder in (self.dir, self.samples):
            for stale in folder.glob(STALE_TEMPORARY):
                stale.unlink(missing_ok=True)

    @contextlib.contextmanager
    def claimed(self, overwrite: bool, is_main: bool) -> Iterator[bool]:
        """The run folder taken and locked by the main rank for the session (rules in
        ``sketchgen.outputs``; ``overwrite`` as for ``train``). Every rank learns whether
        that worked, so under torchrun all ranks stop together when it did not. Yields
        whether this process may delete files the suite left there (the main rank, in a
        folder the suite made)."""
        from sketchgen import outputs
        from sketchgen.errors import ConfigError

        claim, refused = contextlib.nullcontext(), None
        if is_main:
            try:
                claim = outputs.claim(self.dir, RUN_KIND, overwrite, recognise=_unmarked_run)
            except outputs.OutputError as error:
                refused = error
        with claim:  # entered first: released even if telling the other ranks fails
            if not _on_rank_zero(refused is None):
                raise refused or ConfigError(f"rank 0 could not take the run folder {self.dir}")
            yield is_main and claim.owned

    def truncate_log(self, last_step: int) -> None:
        """Drop records after ``last_step``: a killed run may have logged past its checkpoint."""
        from sketchgen.figures import read_jsonl
        from sketchgen.runtime import atomic_write

        if not self.log.exists():
            return
        kept = [r for r in read_jsonl(self.log) if r.get("step", 0) <= last_step]
        text = b"".join(orjson_line(r) for r in kept)
        atomic_write(self.log, lambda tmp: tmp.write_bytes(text))


def _unmarked_run(folder: Path) -> bool:
    """A run folder from before the suite marked its folders: a checkpoint and its config.
    Resumed as it is, never marked (it may hold files of the user's), never deleted."""
    return (folder / CHECKPOINT).is_file() and (folder / CONFIG).is_file()


def _on_rank_zero(value: bool) -> bool:
    """Rank 0's ``value``, on every rank (``value`` itself on one process)."""
    import torch
    import torch.distributed as dist

    from sketchgen.runtime import world

    if world()[1] == 1:
        return value
    flag = torch.tensor([int(value)])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def orjson_line(record: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _first_non_finite(values: dict[str, float]) -> str | None:
    import math

    return next((k for k, v in values.items() if not math.isfinite(v)), None)


def _all_finite(state: Any) -> bool:
    """True if every floating-point tensor in a nested state dict is finite."""
    import torch

    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_all_finite(v) for v in state)
    return True


def _check_resumable(stored: dict[str, Any], config: TrainConfig) -> None:
    from sketchgen.errors import ConfigError

    current = config.to_dict()
    changed = sorted(k for k in current
                     if k not in RESUMABLE_CHANGES and stored.get(k) != current[k])
    if changed:
        raise ConfigError(
            "cannot resume: the checkpoint was trained with different "
            + ", ".join(f"{k} ({stored.get(k)!r} -> {current[k]!r})" for k in changed))


def build_task(config: TrainConfig, device: torch.device, data: Any,
               class_names: tuple[str, ...], model_config: Any | None = None) -> Task:
    """The task for ``config.model`` (model settings from ``model_config`` if given, as stored
    in a checkpoint, else the registry defaults with ``config.model_options``)."""
    from sketchgen.models import registry

    entry = registry.get_model(config.model)
    if model_config is None:
        model_config = entry.model_config(config.model_options)
    return entry.build(TaskInputs(config, model_config, class_names, device, data))


def train(config: TrainConfig, resume: bool = False, data: Any | None = None,
          overwrite: bool = False) -> RunResult:
    """Train ``config.model`` as configured, writing everything into ``config.out``.

    ``resume``: continue from ``<out>/checkpoint.pt`` if there is one (else start afresh);
    without it, a run directory that already holds a checkpoint is refused.
    ``data``: a ``sketchgen.data.datasets.LabelledDrawings`` (bitmap models render it once at
    ``config.size``) or ``LabelledBitmaps`` already in memory, trained on instead of reading
    ``config.categories`` (see :func:`config_for_data`); its :func:`data_fingerprint` goes
    into the checkpoint, and resuming on other data is refused.
    ``config.out`` must be a new or empty folder or a run folder (``sketchgen.outputs``); it is
    locked while the run trains. ``overwrite``: write into any other folder too (files of the
    names a run writes are replaced, nothing else is deleted).
    Raises ConfigError (bad settings, before any work; ``outputs.OutputError`` for the folder)
    or DivergenceError.
    """
    from sketchgen import runtime

    if data is not None:
        config = config_for_data(config, data)
    rank, world_size, device = runtime.init_distributed(config.device)
    try:
        return _train(config, resume, device, is_main=rank == 0, given=data,
                      overwrite=overwrite)
    finally:
        if world_size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(config: TrainConfig, resume: bool, device: torch.device, is_main: bool,
           given: Any | None = None, overwrite: bool = False) -> RunResult:
    from sketchgen import runtime
    from sketchgen.errors import ConfigError
    from sketchgen.models import registry

    entry, model_config = registry.resolve(config)
    if given is None:
        check_categories(config)
    run = _Run(config.out)
    with run.claimed(overwrite, is_main) as owned:
        if owned:  # not in a folder of the user's: a file of theirs may look like one
            run.remove_temporaries()
        checkpoint = _checkpoint_to_resume(run, config, resume)
        fingerprint = None if given is None else data_fingerprint(given)
        if checkpoint is not None:
            check_same_data(checkpoint, fingerprint)
            model_config = entry.model_config(checkpoint["model_config"])
        runtime.seed_everything(config.seed)
        data, class_names = load_data(config, entry.kind, device, given)
        task = build_task(config, device, data, class_names, model_config)
        if runtime.world()[1] > 1 and not getattr(task, "supports_distributed", False):
            raise ConfigError(f"model {config.model!r} does not support torchrun yet")
        session = _Session(config, model_config, class_names, task, run, is_main, fingerprint)
        if checkpoint is not None:
            session.restore(checkpoint)
        else:
            session.start_afresh()
        del checkpoint  # the task holds copies; free the memory before training
        return session.loop()


def _checkpoint_to_resume(run: _Run, config: TrainConfig, resume: bool) -> dict | None:
    """The run's checkpoint if ``resume`` and compatible (checked through and through: see
    ``sketchgen.training.checkpoints``); refuse to overwrite one otherwise."""
    import torch

    from sketchgen.errors import ConfigError
    from sketchgen.models import registry
    from sketchgen.training.checkpoints import load_task_state, read_checkpoint

    if not run.checkpoint.exists():
        return None
    if not resume:
        raise ConfigError(f"{run.checkpoint} exists; pass --resume to continue that run "
                          "or choose another --out")
    checkpoint = read_checkpoint(run.checkpoint)  # layout, configs, sizes, RNG states
    _check_resumable(checkpoint["config"], config)
    if checkpoint["step"] > config.steps:  # the loop would take no step and report success
        raise ConfigError(f"cannot resume: {run.checkpoint} is at step {checkpoint['step']}, "
                          f"past steps = {config.steps}")
    # the weights against a model built from the checked sizes (on the CPU, without data),
    # before any data is loaded; the real task is built and restored by _train
    entry = registry.get_model(checkpoint["model"])
    model_config = entry.model_config(checkpoint["model_config"])
    task = build_task(config, torch.device("cpu"), None, tuple(checkpoint["class_names"]),
                      model_config)
    load_task_state(task, checkpoint["task"], run.checkpoint)
    return checkpoint


class _Session:
    """One training session of a run: the loop, its checkpoints, grids and log.

    Under torchrun every rank runs the loop; only the main rank (0) writes files."""

    def __init__(self, config: TrainConfig, model_config: Any, class_names: tuple[str, ...],
                 task: Task, run: _Run, is_main: bool = True,
                 data_fingerprint: dict[str, Any] | None = None) -> None:
        self.config, self.model_config, self.class_names = config, model_config, class_names
        self.task, self.run, self.is_main = task, run, is_main
        self.data_fingerprint = data_fingerprint  # of data given in memory, else None
        self.last_saved: int | None = None  # step of the checkpoint on disk
        self.grid_columns = max(1, round(config.grid_size ** 0.5))
        self.grid_labels = grid_labels(config.grid_size, len(class_names), self.grid_columns)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        from sketchgen import runtime
        from sketchgen.errors import ConfigError

        if list(checkpoint["class_names"]) != list(self.class_names):
            raise ConfigError("cannot resume: the data's classes differ from the checkpoint's")
        self.task.load_state_dict(checkpoint["task"])
        runtime.set_rng_state(checkpoint["rng"])
        self.last_saved = checkpoint["step"]
        if self.is_main:
            self.run.truncate_log(self.last_saved)

    def start_afresh(self) -> None:
        from sketchgen.config import dump_toml

        if not self.is_main:
            return
        (self.run.dir / CONFIG).write_text(dump_toml(self.config))
        self.run.log.unlink(missing_ok=True)
        self.save_grid(0)

    def last_good(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {self.run.checkpoint}"

    def save(self, step: int) -> None:
        """An atomic checkpoint, unless the weights went non-finite (then DivergenceError)."""
        import dataclasses

        from sketchgen import runtime
        from sketchgen.config import plain

        state = self.task.state_dict()
        if not _all_finite(state):  # on every rank (same weights), so all stop together
            raise DivergenceError(f"step {step}: the weights are not finite; {self.last_good()}")
        self.last_saved = step
        if not self.is_main:
            return
        runtime.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "step": step, "model": self.config.model,
            "config": self.config.to_dict(),
            "model_config": plain(dataclasses.asdict(self.model_config)),
            "class_names": list(self.class_names), "data": self.data_fingerprint,
            "task": state, "rng": runtime.rng_state(),
        }, self.run.checkpoint)

    def save_grid(self, step: int) -> None:
        """Samples from the fixed noise batch (same seed every time): one GIF frame."""
        import torch

        from sketchgen.figures import save_grid
        from sketchgen.runtime import derived_seed

        noise = torch.Generator().manual_seed(derived_seed(self.config.seed, "grid"))
        if self.is_main:
            images = self.task.sample(self.config.grid_size, self.grid_labels, noise).numpy()
            save_grid(images, self.run.grid_path(step), self.grid_columns)

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with self.run.log.open("ab") as log:
                log.write(orjson_line(record))

    def loop(self) -> RunResult:
        from sketchgen.runtime import average_metrics

        config = self.config
        metrics: dict[str, float] = {}
        began = time.perf_counter()
        bar = tqdm(total=config.steps, initial=self.last_saved or 0, desc=config.model,
                   disable=not (config.progress and self.is_main), dynamic_ncols=True,
                   file=sys.stderr)
        failure: BaseException | None = None  # in flight while the figures are written
        try:
            for step in range((self.last_saved or 0) + 1, config.steps + 1):
                metrics = average_metrics(self.task.train_step(step))
                record = {"step": step, **metrics}
                bad = _first_non_finite(metrics)
                if bad is not None:
                    self.log(record)  # NaN/inf are written as null
                    raise DivergenceError(f"step {step}: {bad} = {metrics[bad]}; "
                                          f"{self.last_good()}")
                if step % config.grad_norm_every == 0 and self.is_main:
                    record["grad_norms"] = self.task.grad_norms()
                if step % config.log_every == 0 or "grad_norms" in record:
                    self.log(record | {"time": round(time.perf_counter() - began, 3)})
                if step % config.sample_every == 0 or step == config.steps:
                    self.save_grid(step)
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self.save(step)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()
                                 if k.startswith("loss")}, refresh=False)
        except BaseException as error:
            failure = error
            raise
        finally:
            bar.close()
            if self.is_main:
                _finish_figures(self.run, config, failure)
        if self.is_main and hasattr(self.task, "save_figures"):  # e.g. Sketch-RNN reconstructions
            self.task.save_figures(self.run.dir)
        return RunResult(self.run.dir, config.steps, metrics)


def _finish_figures(run: _Run, config: TrainConfig, failure: BaseException | None = None
                    ) -> None:
    """The learning GIF from the grids so far and the loss curves (also after a divergence).
    While ``failure`` ends the run (e.g. a full disk while checkpointing), an error here must
    not take its place: it becomes a note on ``failure``."""
    from sketchgen.figures import save_gif, training_curves

    try:
        frames = sorted(run.samples.glob("step_*.png"))
        frames = [f for f in frames if int(f.stem.split("_")[1]) <= config.steps]
        if frames:
            save_gif(frames, run.dir / GIF)
        if run.log.exists() and run.log.stat().st_size:
            training_curves(run.log, run.dir / CURVES, title=f"{config.model}: {run.dir.name}")
    except Exception as error:
        if failure is None:
            raise
        failure.add_note(f"the learning GIF and loss curves were not written either: {error}")
