"""A training run's ``checkpoint.pt``: what it holds, and how one from a stranger is checked
before anything is built from it (the file itself by :func:`sketchgen.checkpoints.load`);
each problem is a one-line :class:`CheckpointError` naming the file and the key.

- The layout (:func:`read_checkpoint`; a saved classifier's is in
  ``sketchgen.evaluation.evaluator``): keys and types, and the stored configs through their
  dataclasses' own field checks -- so every size is in its range before a module is built --
  and the RNG states through ``runtime.set_rng_state``.
- Resuming (:func:`check_resumable`): the settings and data of the run continued must be
  those the checkpoint was trained with, except settings that do not change the result.
- The weights (:func:`restored_task`, :func:`load_task_state`): once the task is built from
  checked sizes, its stored state through :func:`sketchgen.checkpoints.check_state`, then its
  optimizers' settings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from sketchgen import runtime
from sketchgen.checkpoints import (
    check_class_names,
    check_layout,
    check_state,
    first_line,
    joined_lines,
    load,
)
from sketchgen.config import (
    MAX_STEPS,
    RATES,
    SECONDS,
    check_fields,
    setting,
    shown,
)
from sketchgen.errors import CheckpointError, ConfigError, FieldError
from sketchgen.models import registry
from sketchgen.models.task import Task
from sketchgen.training.config import TrainConfig, config_from_mapping
from sketchgen.training.inputs import build_task, check_same_data, data_fingerprint

CHECKPOINT_FORMAT = 1  # bumped when the checkpoint layout changes incompatibly
STOPS = ("steps", "seconds")  # why a run stops: its steps or its seconds budget (TrainConfig)
# Settings that may differ between a run and its resumption: they don't change the result
# (steps and seconds are budgets: a resumption may extend them).
RESUMABLE_CHANGES = ("steps", "seconds", "out", "device", "progress", "checkpoint_every",
                     "sample_every", "log_every", "grad_norm_every")


# -- the layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLayout:
    """The dict of a training run's ``checkpoint.pt`` (``training.harness._Session.save``)."""

    format: int
    step: int = setting(within=(0, MAX_STEPS))
    model: str
    config: dict[str, Any]  # TrainConfig.to_dict()
    model_config: dict[str, Any]  # the registry entry's config dataclass as a dict
    class_names: tuple[str, ...]
    task: dict[str, Any]  # task.state_dict()
    rng: dict[str, Any]  # runtime.rng_state()
    data: dict[str, Any] | None = None  # fingerprint of data given in memory (training.harness)
    # the run's training seconds at this step (TrainConfig.seconds) and why it would stop here;
    # checkpoints from before the seconds budget lack both: they counted no time
    train_seconds: float = setting(0.0, within=(0, SECONDS.high))
    stopped: str = setting("steps", choices=STOPS)

    def __post_init__(self) -> None:
        check_fields(self)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training run's checkpoint, its layout, configs, sizes and RNG states checked; nothing
    is built. Returns the dict as it was saved, with the layout's defaults for the keys an
    older file lacks."""
    path = Path(path)
    checkpoint = load(path)
    layout = check_layout(RunLayout, checkpoint, path)
    for spec in fields(RunLayout):
        checkpoint.setdefault(spec.name, getattr(layout, spec.name))
    if layout.format != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"format {layout.format} is not {CHECKPOINT_FORMAT}, the "
                                    "one this version reads")
    try:
        config = config_from_mapping(layout.config)
    except FieldError as error:
        raise CheckpointError(path, str(error.under("config"))) from None
    except ConfigError as error:
        raise CheckpointError(path, f"config: {error}") from None
    try:
        entry = registry.get_model(layout.model)
    except ConfigError as error:
        raise CheckpointError(path, f"model: {error}") from None
    if config.model != layout.model:
        raise CheckpointError(path, f"config.model is {config.model!r}, model is "
                                    f"{layout.model!r}")
    try:
        entry.model_config(layout.model_config, where="model_config").check(config)
    except ConfigError as error:
        raise CheckpointError(path, str(error)) from None
    check_class_names(layout.class_names, path, "class_names")
    _check_rng(layout.rng, path)
    return checkpoint


def _check_rng(state: dict[str, Any], path: Path) -> None:
    """The RNG states must be what ``runtime.set_rng_state`` restores: tried on the global
    generators, which get their own states back whatever happens."""
    saved = runtime.rng_state()
    try:
        runtime.set_rng_state(state)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError,
            OverflowError) as error:
        raise CheckpointError(path, "rng: not the RNG states sketchgen saves "
                                    f"({first_line(error)})") from None
    finally:
        runtime.set_rng_state(saved)


# -- resuming -----------------------------------------------------------------------------------


def check_resumable(checkpoint: dict[str, Any], config: TrainConfig, given: Any | None = None
                    ) -> None:
    """Refuse (ConfigError naming what differs) to continue ``checkpoint`` (as
    :func:`read_checkpoint` returns it) under ``config`` on ``given`` data (None: the
    config's categories): other settings that change the result, or other data."""
    check_same_settings(checkpoint, config)
    check_same_data(checkpoint, None if given is None else data_fingerprint(given))


def check_same_settings(checkpoint: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to continue ``checkpoint`` under settings that change the result."""
    stored, current = checkpoint["config"], config.to_dict()
    changed = sorted(k for k in current
                     if k not in RESUMABLE_CHANGES and stored.get(k) != current[k])
    if changed:
        raise ConfigError(
            "cannot resume: the checkpoint was trained with different "
            + ", ".join(f"{k} ({stored.get(k)!r} -> {current[k]!r})" for k in changed))


# -- the weights --------------------------------------------------------------------------------


def restored_task(checkpoint: dict[str, Any], config: TrainConfig, device: torch.device,
                  path: Path) -> Task:
    """The task of ``checkpoint`` (as :func:`read_checkpoint` returns it, read from ``path``)
    built under ``config`` on ``device`` without data, from the stored model settings, and
    its weights checked and loaded (:func:`load_task_state`)."""
    model_config = registry.get_model(checkpoint["model"]).model_config(checkpoint["model_config"])
    task = build_task(config, device, None, tuple(checkpoint["class_names"]), model_config)
    load_task_state(task, checkpoint["task"], path)
    return task


def load_task_state(task: Any, state: dict[str, Any], path: Path) -> None:
    """Load a run's stored task state into the task freshly built from its checked configs:
    first :func:`check_state` against the task's own state, then the optimizers' settings and
    moments (torch restores whatever the file says and checks neither)."""
    check_state(task.state_dict(), state, "task", path)
    built = {name: [{key: value for key, value in group.items() if key != "params"}
                    for group in optimizer.param_groups] for name, optimizer in _optimizers(task)}
    try:
        task.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        raise CheckpointError(path, f"task: {joined_lines(error)}") from None
    for name, optimizer in _optimizers(task):
        _check_optimizer(name, optimizer, built[name], path)


def _optimizers(task: Any) -> list[tuple[str, Any]]:
    """The task's optimizers, found among its attributes (the Task protocol does not name
    them)."""
    return [(name, value) for name, value in vars(task).items()
            if isinstance(value, torch.optim.Optimizer)]


def _check_optimizer(name: str, optimizer: Any, built: list[dict[str, Any]], path: Path
                     ) -> None:
    """A loaded optimizer has the settings it was built with from the checked configs (a file's
    maximize=True would train uphill, an lr of 1e300 overflow at the first step), except the
    learning rate, which a schedule changes (Sketch-RNN's decay) within RATES; and it holds
    state for its own parameters only, each tensor that is not a scalar (Adam's moments) of
    its parameter's shape."""
    for index, (group, fresh) in enumerate(zip(optimizer.param_groups, built, strict=True)):
        for key, value in fresh.items():
            where = f"task: {name} param_groups[{index}].{key}"
            if key not in group:
                raise CheckpointError(path, f"{where} is missing")
            if key == "lr" and not (type(group[key]) in (int, float) and group[key] in RATES):
                raise CheckpointError(path, f"{where} must be a number in {RATES}, "
                                            f"got {group[key]!r}")
            if key != "lr" and group[key] != value:
                raise CheckpointError(path, f"{where} is {group[key]!r}, the model's settings "
                                            f"give {value!r}")
    for parameter, state in optimizer.state.items():
        if not isinstance(parameter, torch.Tensor):
            raise CheckpointError(path, f"task: {name} holds state for {shown(parameter)}, "
                                        "which is none of its parameters")
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() and (
                    value.shape != parameter.shape):
                raise CheckpointError(path, f"task: {name} state {key!r} has shape "
                                            f"{tuple(value.shape)}, its parameter's is "
                                            f"{tuple(parameter.shape)}")
