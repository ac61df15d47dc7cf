"""The flags of ``sketchgen train``, generated from :class:`TrainConfig`'s fields.

One ``--flag`` per field, with the field's default and allowed values in its help, plus
``--set KEY=VALUE`` for the model's own options. Flags merge over a ``--config`` TOML file,
which merges over the defaults (:func:`config_from_args`). The library below knows no argparse;
this is where its settings become flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from typing import Any

from sketchgen.config import TOO_DEEP, cut
from sketchgen.errors import ConfigError
from sketchgen.training.config import FIELDS, TrainConfig, config_from_mapping, load_toml

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


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per TrainConfig field, default None so unset flags don't override TOML."""
    for name, spec in FIELDS.items():
        if name in skip or name == "model_options":
            continue
        flag = "--" + name.replace("_", "-")
        hint = _HINTS[name]
        default = spec.default if spec.default is not dataclasses.MISSING else None
        allowed = f"; allowed: {spec.metadata['within']}" if "within" in spec.metadata else ""
        help_text = f"{spec.metadata['help']} (default: {default}{allowed})"
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
    except RecursionError:
        raise ConfigError(f"--set {cut(text, 40)}: {TOO_DEEP}") from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the ``--config`` TOML file and explicit flags, in that order."""
    base = load_toml(args.config) if getattr(args, "config", None) else TrainConfig()
    explicit = {name: getattr(args, name) for name in FIELDS
                if getattr(args, name, None) is not None}
    overrides = dict(_parse_assignment(item) for item in getattr(args, "model_set", []))
    if overrides:
        explicit["model_options"] = base.model_options | overrides
    return config_from_mapping(explicit, base)
