"""The training loop every model goes through, to be read top to bottom: :func:`train` takes
the run folder, resumes the run or starts it afresh, and a ``_Session`` runs the loop and
writes the figures at the end.

Division of work
----------------
The harness (``train``) owns everything that is the same for every model: seeding, device
choice, the loop, the progress bar, the JSONL log, per-layer gradient norms every K steps,
atomic checkpoints with RNG states, ``resume``, sample grids from a fixed noise batch, the
learning GIF, loss curves, the divergence guard and the collapse warning. Next to it: the
data and the task built on it (``sketchgen.training.inputs``), the checkpoint's layout and
checks (``sketchgen.training.checkpoints``), the run folder's files
(``sketchgen.training.run_folder``), validation's records and best checkpoint, and the
training seconds (``sketchgen.training.validation``).

Budgets: a run stops at ``config.steps``, or after the first step at which its training
seconds (``validation.TrainingClock``; also the log's ``time``) reach ``config.seconds``. The
checkpoint holds the count and why the run stopped; a run that spent its seconds is finished.

A *task* owns everything model-specific (protocol: ``sketchgen.models.task``): its modules,
optimizers, schedulers, EMA copies, loss, and its own ``torch.Generator`` from which it draws
batch indices, noise and augmentation. A task is built by the factory of its registry entry
(``sketchgen.models.registry``) from a ``TaskInputs``.

Exact resume
------------
A checkpoint holds ``task.state_dict()`` plus the global python/numpy/torch RNG states
(``sketchgen.runtime.rng_state``), which cover anything the task cannot route through its
own generator (dropout). On CPU, N steps straight and k + resume + (N - k) steps give
bitwise identical weights as long as the task keeps all its state in ``state_dict`` and
``sample`` touches neither the global RNGs nor the task's generator. Validation restores the
global RNG states after each score, so it changes no weight either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from sketchgen import outputs, runtime
from sketchgen.errors import ConfigError, DivergenceError, OutputError
from sketchgen.figures import save_gif, save_grid, training_curves
from sketchgen.models import registry
from sketchgen.models.task import Task
from sketchgen.training.checkpoints import CHECKPOINT_FORMAT, check_same_settings, restored_task
from sketchgen.training.config import TrainConfig, dump_toml, plain
from sketchgen.training.inputs import (
    build_task,
    check_categories,
    check_same_data,
    config_for_data,
    data_fingerprint,
    load_data,
)
from sketchgen.training.run_folder import RunFolder, append_record, truncate_records
from sketchgen.training.validation import TrainingClock, Validation, Validator

# Discriminator collapse (ref 001: D's loss near 1e-14 while G drew near-identical images) is
# warned about once per run, on stderr and in the log record that shows it, when the median of
# the task's logged COLLAPSE_METRIC over the last COLLAPSE_STEPS steps is below COLLAPSE_LOSS.
# A balanced GAN's BCE D loss sits near 2 ln 2 = 1.39; below 1e-3, D is over 99.9% sure of the
# real and the fake images alike (hinge losses: nearly every image clears the margin). The
# median, not every step: in reproductions/discriminator-collapse, where every sample was blank
# by step 500, D's loss was below 1e-3 for at most 17 steps in a row (the median crosses at
# step 451); and not the mean, which one spike would lift. The cpu-small comparison's 200-step
# runs stay clear: lowest 100-step median 0.011 (superdeep), 0.043 (dcgan), 0.099 (tf-dcgan,
# which dips below 1e-3 for 3 steps and recovers). Tasks that log no such metric are never
# warned about (the key is described in sketchgen.models.task).
COLLAPSE_METRIC = "loss_d"
COLLAPSE_LOSS = 1e-3
COLLAPSE_STEPS = 100


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    step: int  # the last step taken
    metrics: dict[str, float]  # what train_step returned at that step (empty if none taken)
    train_seconds: float  # the run's training seconds at that step, validation excluded
    stopped: str  # "steps" or "seconds": the budget that ended the run


def train(config: TrainConfig, resume: bool = False, data: Any | None = None,
          overwrite: bool = False, validation: Validation | None = None,
          clock: Callable[[], float] = time.perf_counter) -> RunResult:
    """Train ``config.model`` as configured, writing everything into ``config.out``.

    ``resume``: continue from ``<out>/checkpoint.pt`` if there is one (else start afresh);
    without it, a run directory that already holds a checkpoint is refused.
    ``data``: a ``sketchgen.data.datasets.LabelledDrawings`` (bitmap models render it once at
    ``config.size``) or ``LabelledBitmaps`` already in memory, trained on instead of reading
    ``config.categories`` (see ``inputs.config_for_data``); its ``inputs.data_fingerprint``
    goes into the checkpoint, and resuming on other data is refused.
    ``config.out`` must be a new or empty folder or a run folder (``sketchgen.outputs``); it is
    locked while the run trains. ``overwrite``: write into any other folder too (files of the
    names a run writes are replaced, nothing else is deleted).
    ``validation``: score the run during training (``sketchgen.training.validation``).
    ``clock``: the time in seconds, read for the training seconds (``config.seconds``).
    Raises ConfigError (bad settings, before any work; ``OutputError`` for the folder)
    or DivergenceError.
    """
    if data is not None:
        config = config_for_data(config, data)
    rank, world_size, device = runtime.init_distributed(config.device)
    try:
        return _train(config, resume, device, is_main=rank == 0, given=data,
                      overwrite=overwrite, validation=validation, clock=clock)
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def _train(config: TrainConfig, resume: bool, device: torch.device, is_main: bool,
           given: Any | None = None, overwrite: bool = False,
           validation: Validation | None = None,
           clock: Callable[[], float] = time.perf_counter) -> RunResult:
    entry, model_config = registry.resolve(config)
    if given is None:
        check_categories(config)
    run = RunFolder(config.out)
    with _claimed(run, overwrite, is_main) as owned:
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
        if is_main and hasattr(task, "summary"):
            print(f"{config.model}: {task.summary()}", file=sys.stderr)
        if runtime.world()[1] > 1 and not getattr(task, "supports_distributed", False):
            raise ConfigError(f"model {config.model!r} does not support torchrun yet")
        session = _Session(config, model_config, class_names, task, run, is_main, fingerprint,
                           validation, clock)
        if checkpoint is not None:
            session.restore(checkpoint)
        else:
            session.start_afresh()
        del checkpoint  # the task holds copies; free the memory before training
        return session.loop()


@contextlib.contextmanager
def _claimed(run: RunFolder, overwrite: bool, is_main: bool) -> Iterator[bool]:
    """The run folder taken and locked by the main rank for the session (rules in
    ``sketchgen.outputs``; ``overwrite`` as for ``train``). Every rank learns whether that
    worked, so under torchrun all ranks stop together when it did not. Yields whether this
    process may delete files the suite left there (the main rank, in a folder the suite
    made)."""
    claim, refused = contextlib.nullcontext(), None
    if is_main:
        try:
            claim = outputs.claim(run.path, RunFolder.kind, overwrite,
                                  recognise=lambda folder: RunFolder(folder).holds_unmarked_run())
        except OutputError as error:
            refused = error
    with claim:  # entered first: released even if telling the other ranks fails
        if not _on_rank_zero(refused is None):
            raise refused or ConfigError(f"rank 0 could not take the run folder {run.path}")
        yield is_main and claim.owned


def _on_rank_zero(value: bool) -> bool:
    """Rank 0's ``value``, on every rank (``value`` itself on one process)."""
    if runtime.world()[1] == 1:
        return value
    flag = torch.tensor([int(value)])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _checkpoint_to_resume(run: RunFolder, config: TrainConfig, resume: bool) -> dict | None:
    """The run's checkpoint if ``resume`` and compatible (checked through and through: see
    ``sketchgen.training.checkpoints``); refuse to overwrite one otherwise."""
    if not run.checkpoint.exists():
        return None
    if not resume:
        raise OutputError(f"{run.checkpoint} exists: choose another out", allowed_by="resume",
                          to="continue that run")
    checkpoint = run.read_checkpoint()  # layout, configs, sizes, RNG states
    check_same_settings(checkpoint, config)
    if checkpoint["step"] > config.steps:  # the loop would take no step and report success
        raise ConfigError(f"cannot resume: {run.checkpoint} is at step {checkpoint['step']}, "
                          f"past steps = {config.steps}")
    # the weights against a model built from the checked sizes (on the CPU, without data),
    # before any data is loaded; the real task is built and restored by _train
    restored_task(checkpoint, config, torch.device("cpu"), run.checkpoint)
    return checkpoint


class _Session:
    """One training session of a run: the loop, its checkpoints, grids and log.

    Under torchrun every rank runs the loop; only the main rank (0) writes files."""

    def __init__(self, config: TrainConfig, model_config: Any, class_names: tuple[str, ...],
                 task: Task, run: RunFolder, is_main: bool = True,
                 data_fingerprint: dict[str, Any] | None = None,
                 validation: Validation | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.config, self.model_config, self.class_names = config, model_config, class_names
        self.task, self.run, self.is_main = task, run, is_main
        self.data_fingerprint = data_fingerprint  # of data given in memory, else None
        self.validation = validation
        self.validator = Validator(validation, run) if validation and is_main else None
        self.clock_source = clock
        self.clock = TrainingClock(clock)  # restarted, from the stored count, by loop()
        self.last_saved: int | None = None  # step of the checkpoint on disk
        self.train_seconds = 0.0  # the training seconds stored in that checkpoint
        self.out_of_seconds = False  # the training seconds reached config.seconds
        self.grid_columns = max(1, round(config.grid_size ** 0.5))
        self.grid_labels = grid_labels(config.grid_size, len(class_names), self.grid_columns)
        self.collapse = _CollapseWatch()  # on the main rank, which writes the log

    def restore(self, checkpoint: dict[str, Any]) -> None:
        if list(checkpoint["class_names"]) != list(self.class_names):
            raise ConfigError("cannot resume: the data's classes differ from the checkpoint's")
        self.task.load_state_dict(checkpoint["task"])
        runtime.set_rng_state(checkpoint["rng"])
        self.last_saved, self.train_seconds = checkpoint["step"], checkpoint["train_seconds"]
        self.out_of_seconds = self.config.seconds is not None and (
            self.train_seconds >= self.config.seconds)
        if self.is_main:  # the records kept tell whether collapse was warned about
            for record in truncate_records(self.run.log, self.last_saved):
                self.collapse.see(record)
        if self.validator is not None:
            self.validator.restore(self.last_saved)

    def start_afresh(self) -> None:
        if not self.is_main:
            return
        self.run.config.write_text(dump_toml(self.config))
        self.run.log.unlink(missing_ok=True)
        if self.validator is not None:
            self.validator.start_afresh()
        self.save_grid(0)

    def loop(self) -> RunResult:
        config = self.config
        metrics: dict[str, float] = {}
        step = self.last_saved or 0
        self.clock = TrainingClock(self.clock_source, self.train_seconds)
        bar = tqdm(total=config.steps, initial=step, desc=config.model,
                   disable=not (config.progress and self.is_main), dynamic_ncols=True,
                   file=sys.stderr)
        failure: BaseException | None = None  # in flight while the figures are written
        try:
            if self.validation is not None and self.last_saved is None:  # a fresh start
                self.validate(0)
            while step < config.steps and not self.out_of_seconds:
                step += 1
                metrics = self.train_step(step)
                self.out_of_seconds = self.seconds_spent()
                last = step == config.steps or self.out_of_seconds
                if step % config.sample_every == 0 or last:
                    self.save_grid(step)
                if self.validation is not None and (self.validation.due(step) or last):
                    self.validate(step)
                elif step % config.checkpoint_every == 0 or last:
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
        if self.is_main:
            self.save_task_figures()
        return RunResult(self.run.path, step, metrics, self.train_seconds, self.stopped)

    def train_step(self, step: int) -> dict[str, float]:
        """One step of the task, logged (with gradient norms every ``grad_norm_every``)."""
        metrics = runtime.average_metrics(self.task.train_step(step))
        record = {"step": step, **metrics}
        bad = _first_non_finite(metrics)
        if bad is not None:
            self.log(record)  # NaN/inf are written as null
            raise DivergenceError(f"step {step}: {bad} = {metrics[bad]}; {self.last_good()}")
        if step % self.config.grad_norm_every == 0 and self.is_main:
            record["grad_norms"] = self.task.grad_norms()
        if step % self.config.log_every == 0 or "grad_norms" in record:
            record["time"] = round(self.clock.seconds(), 3)
            self.log(self.with_warning(record))
        return metrics

    def seconds_spent(self) -> bool:
        """Whether the training seconds reached ``config.seconds`` (rank 0's clock decides, so
        under torchrun all ranks stop at the same step)."""
        if self.config.seconds is None:
            return False
        return _on_rank_zero(self.clock.seconds() >= self.config.seconds)

    @property
    def stopped(self) -> str:
        """Why the run would stop at the current step (``checkpoints.STOPS``)."""
        return "seconds" if self.out_of_seconds else "steps"

    def validate(self, step: int) -> None:
        """Score the task (main rank), record it, write the step's checkpoint and copy it to
        the best checkpoint if its score is the lowest so far; none of it is training time."""
        with self.clock.paused():
            best = False
            if self.validator is not None:
                metrics, seconds = self.clock.timed(lambda: self.validator.score(self.task, step))
                best = self.validator.record(step, self.clock.seconds(), seconds, metrics)
            self.save(step)
            if best:
                self.validator.keep_best()

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            append_record(self.run.log, record)

    def with_warning(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record``, with a ``warning`` if it is the first to show discriminator collapse
        (printed on stderr too). Main rank only; reads the record, nothing else."""
        warning = self.collapse.see(record) if self.is_main else None
        if warning is None:
            return record
        tqdm.write(f"{self.config.model}: warning: step {record['step']}: {warning}",
                   file=sys.stderr)
        return record | {"warning": warning}

    def save_grid(self, step: int) -> None:
        """Samples from the fixed noise batch (same seed every time): one GIF frame."""
        noise = torch.Generator().manual_seed(runtime.derived_seed(self.config.seed, "grid"))
        if self.is_main:
            images = self.task.sample(self.config.grid_size, self.grid_labels, noise).numpy()
            save_grid(images, self.run.grid(step), self.grid_columns)

    def save(self, step: int) -> None:
        """An atomic checkpoint, unless the weights went non-finite (then DivergenceError)."""
        state = self.task.state_dict()
        if not _all_finite(state):  # on every rank (same weights), so all stop together
            raise DivergenceError(f"step {step}: the weights are not finite; {self.last_good()}")
        self.last_saved, self.train_seconds = step, self.clock.seconds()
        if not self.is_main:
            return
        runtime.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "step": step, "model": self.config.model,
            "config": self.config.to_dict(),
            "model_config": plain(dataclasses.asdict(self.model_config)),
            "class_names": list(self.class_names), "data": self.data_fingerprint,
            "task": state, "rng": runtime.rng_state(),
            "train_seconds": self.train_seconds, "stopped": self.stopped,
        }, self.run.checkpoint)

    def last_good(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {self.run.checkpoint}"

    def save_task_figures(self) -> None:
        """The figures the model adds at the end of a run (e.g. Sketch-RNN's reconstructions),
        each written as a grid."""
        if not hasattr(self.task, "figures"):
            return
        for name, (images, columns) in self.task.figures().items():
            save_grid(images, self.run.path / name, columns)


class _CollapseWatch:
    """Discriminator collapse in a run's log records (rule: ``COLLAPSE_LOSS``). Fed every
    record as it is logged, and on resume the records already in the log, so a resumed run
    warns at the step the uninterrupted run would, and only once."""

    def __init__(self) -> None:
        self.first_step: int | None = None  # of the first record with the metric
        self.recent: deque[tuple[int, float]] = deque()  # (step, value), last COLLAPSE_STEPS
        self.warned = False

    def see(self, record: dict[str, Any]) -> str | None:
        """The warning if ``record`` is the first to show collapse, else None."""
        value = record.get(COLLAPSE_METRIC)
        if value is None or self.warned:
            return None
        step = record["step"]
        self.first_step = step if self.first_step is None else self.first_step
        self.recent.append((step, value))
        while self.recent[0][0] <= step - COLLAPSE_STEPS:
            self.recent.popleft()
        if step - self.first_step + 1 < COLLAPSE_STEPS:  # too early to judge
            return None
        median = statistics.median(v for _, v in self.recent)
        if median >= COLLAPSE_LOSS:
            return None
        self.warned = True
        return (f"the median {COLLAPSE_METRIC} of steps {self.recent[0][0]}-{step} is "
                f"{median:.3g}, below {COLLAPSE_LOSS:g}: the discriminator is winning "
                f"outright (discriminator collapse)")


def grid_labels(count: int, num_classes: int, columns: int) -> torch.Tensor:
    """Labels for a sample grid: row r shows class r mod num_classes."""
    return (torch.arange(count) // columns) % num_classes


def _first_non_finite(values: dict[str, float]) -> str | None:
    return next((k for k, v in values.items() if not math.isfinite(v)), None)


def _all_finite(state: Any) -> bool:
    """True if every floating-point tensor in a nested state dict is finite."""
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_all_finite(v) for v in state)
    return True


def _finish_figures(run: RunFolder, config: TrainConfig, failure: BaseException | None = None
                    ) -> None:
    """The learning GIF from the grids so far and the loss curves (also after a divergence).
    While ``failure`` ends the run (e.g. a full disk while checkpointing), an error here must
    not take its place: it becomes a note on ``failure``."""
    try:
        frames = run.grids(config.steps)
        if frames:
            save_gif(frames, run.gif)
        if run.log.exists() and run.log.stat().st_size:
            training_curves(run.log, run.curves, title=f"{config.model}: {run.path.name}")
    except Exception as error:
        if failure is None:
            raise
        failure.add_note(f"the learning GIF and loss curves were not written either: {error}")
