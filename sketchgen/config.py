"""Training configuration: one dataclass whose defaults are shared by the API, TOML files and CLI.

Precedence: dataclass defaults < TOML file (``--config``) < explicit command-line flags.
The command-line flags of ``sketchgen train`` are generated from :class:`TrainConfig`
(``add_config_arguments``), so a new field is automatically a new flag with the same default.

A TOML file holds the :class:`TrainConfig` fields at top level and the chosen model's own
settings (its registry config dataclass, e.g. ``sketchgen.gan.GanConfig``) in a
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

import argparse
import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchgen.cli import UsageError


class ConfigError(UsageError):
    """A configuration that cannot work (unknown model, category or field, impossible size).

    A ``UsageError``, so the CLI prints it as one line with exit status 2 before any work.
    """


def _help(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text (what it is, and why the default) shows in ``--help``."""
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model's own settings."""

    model: str = _help("registered model name (see `sketchgen train --help`)", default="sngan")
    categories: tuple[str, ...] = _help(
        "Quick, Draw! category names or ndjson/npy paths; one class per entry, in this order",
        default=(),
    )
    size: int = _help("image side in pixels; 28 is Google's numpy_bitmap size", default=28)
    per_class: int | None = _help(
        "drawings per class (first N); None = all, the default for real runs", default=None
    )
    mirror: str | None = _help(
        "data mirror folder/URL; None = $QUICKDRAW_MIRROR, so runs stay offline-capable",
        default=None,
    )
    steps: int = _help("optimizer steps in total (a resumed run stops at the same step)",
                       default=2000)
    batch_size: int = _help("images per step; 64 is the DCGAN paper's and the presets' value",
                            default=64)
    seed: int = _help("seeds python, numpy, torch and the task's batch generator", default=0)
    out: str = _help("run directory: checkpoint, log, grids, GIF, loss curves", default="runs/run")
    checkpoint_every: int = _help(
        "steps between atomic checkpoints; a kill loses at most this many steps", default=500
    )
    sample_every: int = _help(
        "steps between sample grids from the fixed noise batch (the GIF's frames)", default=250
    )
    log_every: int = _help("steps between JSONL log lines; 1 = every step, cheap", default=1)
    grad_norm_every: int = _help(
        "steps between per-layer gradient norms in the log (one pass over all parameters)",
        default=50,
    )
    grid_size: int = _help("images per sample grid (a square number reads best)", default=64)
    device: str = _help("auto = CUDA, then MPS, then CPU; or any torch device string",
                        default="auto")
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
        # TOML and argparse give lists; a tuple keeps the config hashable and immutable.
        object.__setattr__(self, "categories", tuple(self.categories))
        self.check()

    def check(self) -> None:
        """Reject values no model can use; model-specific checks live in the model config."""
        for name in ("size", "steps", "batch_size", "checkpoint_every", "sample_every",
                     "log_every", "grad_norm_every", "grid_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"per_class must be >= 1 or None, got {self.per_class}")

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
_HINTS = typing.get_type_hints(TrainConfig)


def _scalar_type(hint: Any) -> type:
    """``int | None`` -> int, ``tuple[str, ...]`` -> str: the type one CLI token converts to."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _scalar_type(args[0])
    if origin in (tuple, list):
        return args[0]
    return hint


def config_from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with ``values`` replaced; unknown keys fail."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}; "
                          f"known: {', '.join(FIELDS)}")
    try:
        return dataclasses.replace(base or TrainConfig(), **values)
    except TypeError as error:  # e.g. a string where a number belongs, caught in __post_init__
        raise ConfigError(str(error)) from error


def load_toml(path: str | Path) -> TrainConfig:
    """Read a TOML config: TrainConfig fields at top level, model settings in
    ``[model_options]``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {path}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from error
    return config_from_mapping(data)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per TrainConfig field, default None so unset flags don't override TOML."""
    for name, spec in FIELDS.items():
        if name in skip or name == "model_options":
            continue
        flag = "--" + name.replace("_", "-")
        hint = _HINTS[name]
        default = spec.default if spec.default is not dataclasses.MISSING else None
        help_text = f"{spec.metadata['help']} (default: {default})"
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif typing.get_origin(hint) in (tuple, list):
            parser.add_argument(flag, nargs="+", type=_scalar_type(hint), default=None,
                                metavar=name.upper(), help=help_text)
        else:
            parser.add_argument(flag, type=_scalar_type(hint), default=None,
                                metavar=name.upper(), help=help_text)
    parser.add_argument("--set", dest="model_set", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one field of the model's config (repeatable), "
                             "e.g. --set lr_g=1e-4; values are parsed as TOML")


def _parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value  # a bare word such as --set loss=hinge is a string


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the ``--config`` TOML file and explicit flags, in that order."""
    base = load_toml(args.config) if getattr(args, "config", None) else TrainConfig()
    explicit = {name: getattr(args, name) for name in FIELDS
                if getattr(args, name, None) is not None}
    overrides = dict(_parse_assignment(item) for item in getattr(args, "model_set", []))
    if overrides:
        explicit["model_options"] = base.model_options | overrides
    return config_from_mapping(explicit, base)


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
