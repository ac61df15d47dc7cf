"""Training configuration: one dataclass whose defaults are shared by the API, TOML files and CLI.

Precedence: dataclass defaults < TOML file (``--config``) < explicit command-line flags.
Every config dataclass of the suite declares each field's allowed values beside it
(:func:`setting`) and checks them on construction (:func:`check_fields`), so TOML files, flags,
API calls and the configs stored in checkpoints are held to the same types and ranges.
The command-line flags of ``sketchgen train`` are generated from :class:`TrainConfig`
(``add_config_arguments``), so a new field is automatically a new flag with the same default.

A TOML file holds the :class:`TrainConfig` fields at top level and the chosen model's own
settings (its registry config dataclass, e.g. ``sketchgen.models.gan.GanConfig``) in a
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
import contextlib
import dataclasses
import functools
import json
import os
import reprlib
import tomllib
import types
import typing
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchgen.errors import ConfigError, FieldError


# -- allowed values: declared beside each field, checked by check_fields ------------------------


@dataclass(frozen=True)
class Interval:
    """Allowed numbers, written as in mathematics: ``"(0, 1]"``, ``"[0, 1)"``; a tuple
    ``(low, high)`` is the closed interval ``[low, high]``. Always bounded, so NaN and the
    infinities are never inside."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def of(cls, spec: str | tuple[float, float] | Interval) -> Interval:
        if isinstance(spec, Interval):
            return spec
        if isinstance(spec, tuple):
            return cls(*spec)
        low, high = (_number(part) for part in spec[1:-1].split(","))
        return cls(low, high, spec[0] == "(", spec[-1] == ")")

    def __contains__(self, value: float) -> bool:
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return (f"{'(' if self.low_open else '['}{_written(self.low)}, "
                f"{_written(self.high)}{')' if self.high_open else ']'}")


def _number(text: str) -> float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _written(number: float) -> str:
    """1024 -> "1_024": big bounds readable, and still valid TOML and Python."""
    if number == int(number):
        return f"{int(number):_}"
    return repr(number)


MAX_STEPS = 10**9  # optimizer steps: ~30 years at one step per second
MAX_TEXT = 4_096  # characters in any string (Linux's PATH_MAX): a path or a name, not a book
MAX_CLASSES = 10_000  # categories of one run; embeddings and classifiers grow with their count
# Ranges shared by several configs (each field names its own otherwise). Generous, but bounded
# so that a typo or a stranger's file cannot ask for a terabyte before anything is checked.
STEPS = Interval(1, MAX_STEPS)
BATCH_SIZES = Interval(1, 65_536)  # 1,000x the DCGAN paper's 64
SIZES = Interval(1, 1_024)  # px; Google's drawings live in a 256-unit box, 28 px bitmaps
SEEDS = Interval(0, 2**63 - 1)  # torch's generators take any 64-bit seed; numpy folds it
DRAWINGS_PER_CLASS = Interval(1, 10_000_000)  # no Quick, Draw! category has a million
WIDTHS = Interval(1, 1_024)  # base channel counts (DCGAN: 64, the classifier's k: 12 to 75)
UNITS = Interval(1, 4_096)  # latent, embedding and LSTM sizes (magenta's largest: 512)
EPOCHS = Interval(1, 10_000)
RATES = Interval.of("(0, 1]")  # learning rates, decays, keep probabilities
FRACTIONS = Interval.of("(0, 1)")  # shares of a data set that must leave something either side
SAMPLE_SEED = 0  # sampling's seed when none is given (sketchgen sample, sketchgen.training.sampling, the API)

# The suite's evaluator (sketchgen.evaluation.classifier's width-k CNN): the defaults of ClassifierConfig,
# of a comparison's [classifier] table and of the API's default evaluator, declared once here
# (torch-free, so the comparison's config needs no model import).
EVALUATOR_WIDTH = 16  # k: 8k = 128 features, fewer than N so covariances are full rank
EVALUATOR_BATCH_SIZE = 128  # images per Adam step
EVALUATOR_MAX_EPOCHS = 15  # early stopping usually ends sooner
EVALUATOR_PATIENCE = 2  # epochs without a better validation loss before stopping


# Sizes that are each in range can still multiply into a model no machine holds (dcgan at
# 1024 px with width 1024: 367 billion weights). 2**28 weights are 1 GiB of float32, 32x the
# largest preset at 64 px (8.3 million).
MAX_PARAMETERS = 2**28


def check_model_size(build: Callable[[], Iterable[Any]], what: str) -> None:
    """Refuse a model of more than MAX_PARAMETERS weights before anything is allocated:
    ``build()`` returns its modules built on torch's meta device, which records shapes only
    (and draws nothing from the random generators)."""
    import torch

    with torch.device("meta"):
        modules = list(build())
    count = sum(parameter.numel() for module in modules for parameter in module.parameters())
    if count > MAX_PARAMETERS:
        raise ConfigError(f"{what} would have {count:_} parameters; at most {MAX_PARAMETERS:_} "
                          "(lower its sizes)")


def setting(default: Any = dataclasses.MISSING, *, within: Any = None,
            choices: tuple[str, ...] = (), path: bool = False, max_items: int = 0,
            help_text: str = "", default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its allowed values declared beside it, enforced by
    :func:`check_fields`: ``within`` an :class:`Interval` (or its text or tuple) for a number
    or each number of a list; ``choices`` the allowed strings; ``path`` for a string naming a
    file or folder (not empty); ``max_items`` the most entries a list may have. No string may
    hold NUL or other control characters, or more than MAX_TEXT characters."""
    metadata = {"help": help_text, "within": within and Interval.of(within),
                "choices": choices, "path": path, "max_items": max_items}
    return field(default=default, default_factory=default_factory,
                 metadata={key: value for key, value in metadata.items() if value})


def _help(text: str, **kwargs: Any) -> Any:
    """A TrainConfig field whose help text (what it is, and why the default) shows in
    ``--help``; ``kwargs`` as for :func:`setting`."""
    return setting(help_text=text, **kwargs)


def check_fields(config: Any) -> None:
    """Raise :class:`FieldError` for the first field of the dataclass instance ``config`` whose
    value does not have the declared type or allowed value. Types are exact: a bool is not an
    int, a float (even 2.0) is not an int; an int is a number where a float is declared."""
    for spec, hint in _declarations(type(config)):
        _check(getattr(config, spec.name), hint, spec.metadata, spec.name)


def instantiate(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)`` with a field error named by its path inside the table ``where``."""
    try:
        return cls(**values)
    except FieldError as error:
        raise error.under(where) from None


@functools.cache
def _declarations(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(spec, hints[spec.name]) for spec in dataclasses.fields(cls)]


def _check(value: Any, hint: Any, meta: Mapping[str, Any], path: str) -> None:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        if value is None:
            return
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))  # `X | None`
    _check_length(value, meta, path)
    if _is_list(hint):
        items = _item_hints(hint, value)
        if items is not None:
            for index, (item, item_hint) in enumerate(zip(value, items, strict=True)):
                _check(item, item_hint, meta, f"{path}[{index}]")
            return
    elif _fits(value, hint, meta):
        return
    expected = ("None or " if optional else "") + _expected(hint, meta)
    raise FieldError(path, f"must be {expected}, got {shown(value)}")


def _check_length(value: Any, meta: Mapping[str, Any], path: str) -> None:
    """Lengths first: a 10 MB string or a million-entry list is refused by its size alone."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise FieldError(path, f"must be at most {MAX_TEXT:_} characters, got {len(value):_}")
    most = meta.get("max_items")
    if most and isinstance(value, (list, tuple)) and len(value) > most:
        raise FieldError(path, f"must be a list of at most {most:_} entries, got {len(value):_}")


def _is_list(hint: Any) -> bool:
    return typing.get_origin(hint) in (tuple, list)


def _item_hints(hint: Any, value: Any) -> list[Any] | None:
    """The hint of each item of ``value`` (a TOML list, tuple or list), or None if it is not
    one or has the wrong length."""
    args = typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        return None
    if (len(args) == 2 and args[1] is Ellipsis) or typing.get_origin(hint) is list:
        return [args[0]] * len(value)
    return list(args) if len(args) == len(value) else None


def _fits(value: Any, hint: Any, meta: Mapping[str, Any]) -> bool:
    if hint is Any:
        return True
    if typing.get_origin(hint) is dict:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return (isinstance(value, str) and not any(unicodedata.category(c) == "Cc" for c in value)
                and (bool(value) or not meta.get("path"))
                and (value in meta["choices"] if "choices" in meta else True))
    number = (int,) if hint is int else (int, float)
    return (isinstance(value, number) and not isinstance(value, bool)
            and ("within" not in meta or value in meta["within"]))


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"),
          bool: ("true or false", "booleans")}


def _expected(hint: Any, meta: Mapping[str, Any], plural: bool = False) -> str:
    """What a value of ``hint`` must be, in words: "an integer in [1, 65_536]"."""
    if _is_list(hint):
        items = typing.get_args(hint)
        count = "" if items[-1] is Ellipsis or len(items) == 1 else f"{len(items)} "
        return f"a list of {count}{_expected(items[0], meta, plural=True)}"
    if typing.get_origin(hint) is dict:
        return "tables" if plural else "a table"
    if dataclasses.is_dataclass(hint):
        return f"{hint.__name__}s" if plural else f"a {hint.__name__}"
    if hint is str and "choices" in meta:
        allowed = ", ".join(map(repr, meta["choices"]))
        return f"strings, each one of {allowed}" if plural else f"one of {allowed}"
    if hint is str and meta.get("path"):
        return f"{'paths' if plural else 'a path'} without NUL or control characters"
    if hint is str:
        return f"{'strings' if plural else 'a string'} without control characters"
    noun = _NOUNS.get(hint, (str(hint), str(hint)))[plural]
    return f"{noun} in {meta['within']}" if "within" in meta else noun


_SHORT_REPR = reprlib.Repr()  # three levels deep, ten items, 200 characters a string
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 3, 200, 200
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = 10


def shown(value: Any) -> str:
    """A value as the message quotes it: TOML's true/false, otherwise Python's repr (which
    shows NUL and control characters escaped), cut to one readable line; lists, tables and
    strings shortened before they are written out (a checkpoint's list may be nested deeper
    than repr can recurse)."""
    return cut(str(value).lower() if isinstance(value, bool) else _SHORT_REPR.repr(value))


def cut(text: str, limit: int = 200) -> str:
    """``text`` if it is at most ``limit`` characters, else its start and "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listed(names: Iterable[str], most: int = 10) -> str:
    """Names for a message, such as a file's unknown keys: the first ``most``, each cut."""
    names = list(names)
    more = f" and {len(names) - most:_} more" if len(names) > most else ""
    return ", ".join(cut(name, 60) for name in names[:most]) + more


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model's own settings."""

    model: str = _help("registered model name (see `sketchgen train --help`)", default="sngan")
    categories: tuple[str, ...] = _help(
        "Quick, Draw! category names or ndjson/npy paths; one class per entry, in this order",
        default=(), max_items=MAX_CLASSES,
    )
    size: int = _help("image side in pixels; 28 is Google's numpy_bitmap size", default=28,
                      within=SIZES)
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
        raise ConfigError(f"unknown config field(s): {listed(unknown)}; "
                          f"known: {', '.join(FIELDS)}")
    return dataclasses.replace(base or TrainConfig(), **values)


TOO_DEEP = "nested too deep for the TOML parser"  # tomllib recurses into [[[...]]]


# -- TOML tables and files -> config dataclasses (every config of the suite) --------------------

TOP = "config"  # how a message names a file's top-level table
Config = typing.TypeVar("Config")


def from_mapping(cls: type[Config], values: Mapping[str, Any], *, base: Config | None = None,
                 where: str = "") -> Config:
    """The dataclass ``cls`` from a TOML table (or any mapping): a dataclass field from a
    table (or from keys of this one, if declared :func:`inline`), a list of dataclasses from
    an array of tables (``[[models]]``), every other value as it is (checked by the
    dataclass). Fields not given keep ``base``'s values (default: ``cls``'s defaults; then a
    field without one must be given). ``where``: the table's path.

    Unknown and missing keys and bad values are one-line ConfigErrors naming the table or
    field by its TOML path (``models[1]: unknown key(s) ...``, ``classifier.width must be``).
    """
    hints = {spec.name: hint for spec, hint in _declarations(cls)}
    inlined = {key: spec.name for spec, _ in _declarations(cls)
               for key in spec.metadata.get("inline", ())}
    keys = [*(name for name in hints if name not in inlined.values()), *inlined]
    table = where or TOP
    unknown = sorted(str(key) for key in values if key not in keys)
    if unknown:
        raise ConfigError(f"{table}: unknown key(s) {listed(unknown)}; known: {', '.join(keys)}")
    missing = [spec.name for spec, _ in _declarations(cls)
               if spec.name not in values and base is None and _required(spec)]
    if missing:
        raise ConfigError(f"{table}: missing {', '.join(missing)}")
    given = {key: _from_toml(value, hints[key], f"{where}.{key}" if where else key)
             for key, value in values.items() if key not in inlined}
    for name in dict.fromkeys(inlined.values()):
        part = {key: value for key, value in values.items() if inlined.get(key) == name}
        if part:
            given[name] = from_mapping(hints[name], part, where=where)
    try:
        return dataclasses.replace(base, **given) if base is not None else cls(**given)
    except FieldError as error:
        raise (error.under(where) if where else error) from None


def inline(default_factory: Callable[[], Any], keys: tuple[str, ...]) -> Any:
    """A dataclass field whose ``keys`` (fields of its own dataclass) are written in the
    enclosing TOML table itself rather than in a table of their own: :func:`from_mapping`
    reads ``[classifier] width = 8`` into ``classifier.network.width`` if ``network`` is
    ``inline(ClassifierConfig, ("width", ...))``; its other fields keep their defaults."""
    return field(default_factory=default_factory, metadata={"inline": keys})


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _from_toml(value: Any, hint: Any, path: str) -> Any:
    """A table as its dataclass, an array of tables as a tuple (or list) of them."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise FieldError(path, f"must be a table, got {shown(value)}")
        return from_mapping(hint, value, where=path)
    items = typing.get_args(hint)
    if _is_list(hint) and dataclasses.is_dataclass(items[0]):
        if not isinstance(value, (list, tuple)):
            raise FieldError(path, f"must be an array of tables, got {shown(value)}")
        return typing.get_origin(hint)(_from_toml(item, items[0], f"{path}[{index}]")
                                       for index, item in enumerate(value))
    return value


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML file's tables; a missing file, bad TOML or nesting too deep for the parser is
    a one-line ConfigError naming the file."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {TOO_DEEP}") from None


@contextlib.contextmanager
def named_by_file(path: str | os.PathLike) -> Iterator[None]:
    """A ConfigError raised inside, such as a field's, prefixed with the file it came from."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def from_toml(cls: type[Config], path: str | os.PathLike) -> Config:
    """The dataclass ``cls`` from a TOML file (see :func:`from_mapping`); errors name the file."""
    tables = read_toml(path)
    with named_by_file(path):
        return from_mapping(cls, tables)


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
    except RecursionError:
        raise ConfigError(f"{path}: {TOO_DEEP}") from None
    try:
        return config_from_mapping(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


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
