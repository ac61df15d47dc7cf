"""``TrainConfig``: the settings of one training run, whose defaults the API, TOML files and
the CLI share.

Precedence: dataclass defaults < TOML file (``--config``) < explicit command-line flags. The
flags of ``sketchgen train`` are generated from :class:`TrainConfig`
(``sketchgen.cli.arguments``), so a new field is automatically a new flag with the same default.
Its fields declare their allowed values with ``sketchgen.config.setting`` and are checked on
construction, like every config dataclass of the suite.

A TOML file holds the :class:`TrainConfig` fields at top level and the chosen model's own
settings (its registry config dataclass, e.g. ``sketchgen.models.gan.config.GanConfig``) in a
``[model_options]`` table::

    model = "sngan"
    categories = ["cat", "dog"]
    size = 28
    steps = 2000

    [model_options]
    lr_g = 2e-4

This module imports no torch, so argument errors stay instant.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasterize.geometry import GOOGLE_SIZE
from sketchgen.config import (
    BATCH_SIZES,
    DRAWINGS_PER_CLASS,
    MAX_CLASSES,
    SECONDS,
    SEEDS,
    SIZES,
    STEPS,
    check_fields,
    from_mapping,
    from_toml,
    listed,
    setting,
)
from sketchgen.errors import ConfigError
from sketchgen.runtime import DEVICE


def _help(text: str, **kwargs: Any) -> Any:
    """A TrainConfig field whose help text (what it is, and why the default) shows in
    ``--help``; ``kwargs`` as for :func:`setting`."""
    return setting(help_text=text, **kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model's own settings."""

    model: str = _help("registered model name (see `sketchgen train --help`)", default="sngan")
    categories: tuple[str, ...] = _help(
        "Quick, Draw! category names or ndjson/npy paths; one class per entry, in this order",
        default=(), max_items=MAX_CLASSES,
    )
    size: int = _help(f"image side in pixels; {GOOGLE_SIZE} is Google's numpy_bitmap size",
                      default=GOOGLE_SIZE, within=SIZES)
    per_class: int | None = _help(
        "drawings per class (first N); None = all, the default for real runs", default=None,
        within=DRAWINGS_PER_CLASS,
    )
    mirror: str | None = _help(
        "data mirror folder/URL; None = $QUICKDRAW_MIRROR, so runs stay offline-capable",
        default=None, path=True,
    )
    steps: int = _help("optimizer steps in total (a resumed run stops at the same step)",
                       default=2000, within=STEPS)
    seconds: float | None = _help(
        "training wall-clock budget: stop after the first step at which the run's training "
        "seconds (validation excluded) reach it, or at steps; None = steps alone",
        default=None, within=SECONDS,
    )
    batch_size: int = _help("images per step; 64 is the DCGAN paper's and the presets' value",
                            default=64, within=BATCH_SIZES)
    seed: int = _help("seeds python, numpy, torch and the task's batch generator", default=0,
                      within=SEEDS)
    out: str = _help("run directory: checkpoint, log, grids, GIF, loss curves", default="runs/run",
                     path=True)
    checkpoint_every: int = _help(
        "steps between atomic checkpoints; a kill loses at most this many steps", default=500,
        within=STEPS,
    )
    sample_every: int = _help(
        "steps between sample grids from the fixed noise batch (the GIF's frames)", default=250,
        within=STEPS,
    )
    log_every: int = _help("steps between JSONL log lines; 1 = every step, cheap", default=1,
                           within=STEPS)
    grad_norm_every: int = _help(
        "steps between per-layer gradient norms in the log (one pass over all parameters)",
        default=50, within=STEPS,
    )
    grid_size: int = _help("images per sample grid (a square number reads best)", default=64,
                           within=(1, 1_024))  # a 32 x 32 grid
    device: str = _help("auto = CUDA, then MPS, then CPU; or any torch device string",
                        default=DEVICE)
    amp: bool = _help("bfloat16/float16 autocast; used on CUDA only, ignored elsewhere",
                      default=False)
    compile: bool = _help("torch.compile the modules; CUDA only (CPU compile costs more than "
                          "it saves on short runs)", default=False)
    progress: bool = _help("show a tqdm bar with the current losses", default=True)
    model_options: dict[str, Any] = _help(
        "overrides of the model's config dataclass ([model_options] in TOML, --set on the CLI)",
        default_factory=dict,
    )

    def __post_init__(self) -> None:
        check_fields(self)  # model-specific checks live in the model's config
        # TOML and argparse give lists; a tuple keeps the config hashable and immutable.
        object.__setattr__(self, "categories", tuple(self.categories))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, no tuples) for TOML/JSON and ``weights_only`` checkpoints."""
        return plain(dataclasses.asdict(self))


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively: a value as it comes back from TOML or JSON."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def config_from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with ``values`` replaced, through the suite's one
    table-to-dataclass loader (``sketchgen.config.from_mapping``). An unknown key fails first,
    named as a TrainConfig field (a TOML file's, a checkpoint's or an API call's)."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config field(s): {listed(unknown)}; "
                          f"known: {', '.join(FIELDS)}")
    return from_mapping(TrainConfig, values, base=base)


def load_toml(path: str | Path) -> TrainConfig:
    """Read a TOML config: TrainConfig fields at top level, model settings in
    ``[model_options]`` (a table the model's config checks); errors name the file."""
    return from_toml(Path(path), config_from_mapping)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # repr of a float (1e-05, inf, nan) is valid TOML
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def dump_toml(config: TrainConfig) -> str:
    """The config as TOML that :func:`load_toml` reads back to an equal config (None values,
    which TOML cannot express, are left out: they are the defaults)."""
    data = config.to_dict()
    options = data.pop("model_options")
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if value is not None]
    if options:
        lines += ["", "[model_options]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()
                  if value is not None]
    return "\n".join(lines) + "\n"
