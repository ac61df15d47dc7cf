"""A training run's ``checkpoint.pt`` from a stranger, checked before anything is built from
it (the file itself by :func:`sketchgen.checkpoints.load`); each problem is a one-line
:class:`CheckpointError` naming the file and the key.

- The layout (:func:`read_checkpoint`, :func:`read_classifier_checkpoint` for a saved
  classifier): keys and types, and the stored configs through their dataclasses' own field
  checks -- so every size is in its range before a module is built -- and the RNG states
  through ``runtime.set_rng_state``.
- The weights (:func:`load_task_state`): once the task is built from checked sizes, its stored
  state through :func:`sketchgen.checkpoints.check_state`, then its optimizers' settings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sketchgen.checkpoints import (
    check_class_names,
    check_layout,
    check_state,
    first_line,
    joined_lines,
    load,
)
from sketchgen.config import (
    EPOCHS,
    MAX_STEPS,
    RATES,
    check_fields,
    config_from_mapping,
    instantiate,
    setting,
    shown,
)
from sketchgen.errors import CheckpointError, ConfigError, FieldError


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

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ClassifierLayout:
    """The dict of a saved classifier (``sketchgen.evaluation.classifier.save_classifier``)."""

    format: str
    settings: dict[str, Any]  # ClassifierConfig.to_dict()
    class_names: tuple[str, ...]
    history: tuple[dict[str, Any], ...]  # one entry per epoch
    best_epoch: int = setting(within=(0, EPOCHS.high))
    state_dict: dict[str, Any]

    def __post_init__(self) -> None:
        check_fields(self)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training run's checkpoint, its layout, configs, sizes and RNG states checked; nothing
    is built. Returns the dict as it was saved."""
    from sketchgen.models import registry
    from sketchgen.training.harness import CHECKPOINT_FORMAT

    path = Path(path)
    checkpoint = load(path)
    layout = check_layout(RunLayout, checkpoint, path)
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


def read_classifier_checkpoint(path: str | Path) -> dict[str, Any]:
    """A saved classifier, its layout and settings checked; nothing is built. Returns the dict
    as it was saved."""
    from sketchgen.evaluation.classifier import CHECKPOINT_FORMAT, ClassifierConfig

    path = Path(path)
    checkpoint = load(path)
    layout = check_layout(ClassifierLayout, checkpoint, path)
    if layout.format != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"format {layout.format!r} is not {CHECKPOINT_FORMAT!r}: "
                                    "not a sketchgen classifier")
    known = {spec.name for spec in fields(ClassifierConfig)}
    if set(layout.settings) != known:
        raise CheckpointError(path, f"settings: expected the keys {', '.join(sorted(known))}")
    try:
        instantiate(ClassifierConfig, layout.settings, "settings")
    except ConfigError as error:  # a field out of range, or sizes too big together
        raise CheckpointError(path, str(error)) from None
    check_class_names(layout.class_names, path, "class_names", at_least=2)
    return checkpoint


def _check_rng(state: dict[str, Any], path: Path) -> None:
    """The RNG states must be what ``runtime.set_rng_state`` restores: tried on the global
    generators, which get their own states back whatever happens."""
    from sketchgen import runtime

    saved = runtime.rng_state()
    try:
        runtime.set_rng_state(state)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError,
            OverflowError) as error:
        raise CheckpointError(path, "rng: not the RNG states sketchgen saves "
                                    f"({first_line(error)})") from None
    finally:
        runtime.set_rng_state(saved)


# -- 3. the weights -----------------------------------------------------------------------------


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
    import torch

    return [(name, value) for name, value in vars(task).items()
            if isinstance(value, torch.optim.Optimizer)]


def _check_optimizer(name: str, optimizer: Any, built: list[dict[str, Any]], path: Path
                     ) -> None:
    """A loaded optimizer has the settings it was built with from the checked configs (a file's
    maximize=True would train uphill, an lr of 1e300 overflow at the first step), except the
    learning rate, which a schedule changes (Sketch-RNN's decay) within RATES; and it holds
    state for its own parameters only, each tensor that is not a scalar (Adam's moments) of
    its parameter's shape."""
    import torch

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
