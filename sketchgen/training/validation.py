"""Validation during training, and the run's training seconds.

A :class:`Validation` given to ``sketchgen.training.harness.train`` scores the task at step 0
(a fresh start), at every multiple of ``every`` and at the last step taken. Each score is one
record of the run's ``valid.jsonl`` (``RunFolder.valid_log``): ``{"step", "train_seconds",
"valid_seconds", **metrics}``. A checkpoint is written at each of those steps, and the one of
the lowest ``metrics[key]`` so far (ties: the earliest) is copied to ``best.pt``
(``RunFolder.best_checkpoint``). :class:`Validator` keeps that bookkeeping, on the main rank;
the harness decides when.

The global python, numpy and torch RNG states are saved before ``score`` and restored after
it, so ``score`` may draw from them (sampling, a bootstrap) and a run with validation trains
bitwise like one without. ``score`` must leave the task as it found it: its weights, modes and
its own generator (``Task.sample`` with a generator of its own touches none of them).

Training seconds (``TrainConfig.seconds``) are measured by :class:`TrainingClock`: the seconds
of the checkpoint resumed, plus the clock's time since the session began, minus the time
spent validating.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sketchgen import runtime
from sketchgen.config import STEPS, shown
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models.task import Task
from sketchgen.training.run_folder import RunFolder, append_record, truncate_records


@dataclass(frozen=True)
class Validation:
    """What to score during training, how often, and which metric selects the best
    checkpoint."""

    every: int  # steps between scores (besides step 0 and the last step taken)
    score: Callable[[Task, int], dict[str, float]]  # (the task, the step) -> metrics
    key: str = "fid"  # the metric whose lowest value selects best.pt (FID: lower is better)

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or (
                self.every not in STEPS):
            raise FieldError("every", f"must be an integer in {STEPS}, got {shown(self.every)}")
        if not callable(self.score):
            raise FieldError("score", f"must be callable, got {shown(self.score)}")
        if not isinstance(self.key, str) or not self.key:
            raise FieldError("key", f"must be a metric name, got {shown(self.key)}")

    def due(self, step: int) -> bool:
        """Whether ``step`` is a multiple of ``every`` (step 0 and the last step are the
        harness's to add)."""
        return step % self.every == 0


class Validator:
    """The validation records of one run and its best checkpoint, kept in its run folder."""

    def __init__(self, validation: Validation, run: RunFolder) -> None:
        self.validation, self.run = validation, run
        self.best: float | None = None  # the lowest key so far (None: none scored yet)

    def start_afresh(self) -> None:
        """Forget an earlier run's records and best checkpoint (a run killed before its first
        checkpoint starts afresh)."""
        self.run.valid_log.unlink(missing_ok=True)
        self.run.best_checkpoint.unlink(missing_ok=True)

    def restore(self, step: int) -> None:
        """Resuming from the checkpoint of ``step``: drop later records (a killed run may have
        scored past it), and find the best among those kept. If that is ``step`` itself, its
        checkpoint is copied again: a kill may have come before the copy."""
        best_step = None
        for record in truncate_records(self.run.valid_log, step):
            if self.is_new_best(record.get(self.validation.key)):
                self.best, best_step = record[self.validation.key], record["step"]
        if best_step == step:
            self.keep_best()

    def score(self, task: Task, step: int) -> dict[str, float]:
        """``validation.score(task, step)``, the global RNG states as they were before it."""
        saved = runtime.rng_state()
        try:
            metrics = self.validation.score(task, step)
        finally:
            runtime.set_rng_state(saved)
        key = self.validation.key
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"validation score at step {step}: expected a dict of metrics "
                              f"with a number {key!r} (the validation key), got "
                              f"{shown(metrics)}")
        return metrics

    def record(self, step: int, train_seconds: float, valid_seconds: float,
               metrics: dict[str, float]) -> bool:
        """Append the record of a score; returns whether it is the best so far (then the
        harness writes the step's checkpoint and calls :meth:`keep_best`)."""
        append_record(self.run.valid_log, {"step": step, "train_seconds": train_seconds,
                                           "valid_seconds": valid_seconds, **metrics})
        value = metrics[self.validation.key]
        if not self.is_new_best(value):
            return False
        self.best = value
        return True

    def is_new_best(self, value: float | None) -> bool:
        """Lower than every value so far (ties keep the earliest); a NaN (null in the
        records) is never the best."""
        return value is not None and not math.isnan(value) and (
            self.best is None or value < self.best)

    def keep_best(self) -> None:
        """The run's checkpoint, copied atomically to its best checkpoint."""
        runtime.atomic_write(self.run.best_checkpoint,
                             lambda tmp: shutil.copyfile(self.run.checkpoint, tmp))


class TrainingClock:
    """A run's training seconds: those of the checkpoint resumed (``seconds``), plus the time
    of ``clock`` (seconds, e.g. ``time.perf_counter``) since the session began, minus the
    time spent :meth:`paused`."""

    def __init__(self, clock: Callable[[], float], seconds: float = 0.0) -> None:
        self.clock, self.counted = clock, seconds
        self.since: float | None = clock()  # None while paused

    def seconds(self) -> float:
        if self.since is None:
            return self.counted
        return self.counted + (self.clock() - self.since)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time that does not count (validation)."""
        self.counted, self.since = self.seconds(), None
        try:
            yield
        finally:
            self.since = self.clock()

    def timed(self, work: Callable[[], Any]) -> tuple[Any, float]:
        """``work()`` and the seconds it took, by the same clock."""
        started = self.clock()
        result = work()
        return result, self.clock() - started
