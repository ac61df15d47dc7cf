"""The settings machinery every config dataclass of the suite uses, and the values they share.

Every config dataclass (``sketchgen.training.config.TrainConfig``, each model's config, the
evaluator's, a comparison's) declares each field's allowed values beside it (:func:`setting`)
and checks them on construction (:func:`check_fields`), so TOML files, flags, API calls and the
configs stored in checkpoints are held to the same types and ranges. :func:`instantiate` names
a field error by its path in the TOML file; :func:`shown`, :func:`cut` and :func:`listed` quote
values and names in messages. The last section is the one loader from TOML tables and files
to config dataclasses (:func:`from_mapping`, :func:`from_toml`), used for every config file.

Also the one home of what several configs share: the ranges (``STEPS``, ``SIZES``, ...), the
limits on text and lists (``MAX_TEXT``, ``MAX_CLASSES``), shared defaults (``SAMPLE_SEED``; the
evaluator's are ``sketchgen.evaluation.classifier.ClassifierConfig``'s) and the model-size
budget (``MAX_PARAMETERS``, :func:`check_model_size`).

A base module: it imports only ``sketchgen.errors``, and no torch (``check_model_size`` imports
it when called), so argument errors stay instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import reprlib
import tomllib
import types
import typing
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
SECONDS = Interval.of("(0, 1e9]")  # time budgets: up to ~30 years, like MAX_STEPS
SEEDS = Interval(0, 2**63 - 1)  # torch's generators take any 64-bit seed; numpy folds it
DRAWINGS_PER_CLASS = Interval(1, 10_000_000)  # no Quick, Draw! category has a million
WIDTHS = Interval(1, 1_024)  # base channel counts (DCGAN: 64, the classifier's k: 12 to 75)
UNITS = Interval(1, 4_096)  # latent, embedding and LSTM sizes (magenta's largest: 512)
EPOCHS = Interval(1, 10_000)
RATES = Interval.of("(0, 1]")  # learning rates, decays, keep probabilities
FRACTIONS = Interval.of("(0, 1)")  # shares of a data set that must leave something either side
# sampling's seed when none is given (sketchgen sample, sketchgen.training.sampling, the API)
SAMPLE_SEED = 0


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


def from_toml(path: str | os.PathLike, build: Callable[[dict[str, Any]], Config]) -> Config:
    """A config from a TOML file: ``build`` (such as a :func:`from_mapping` of one dataclass,
    with any checks of its own) of the file's tables; every ConfigError names the file."""
    tables = read_toml(path)
    with named_by_file(path):
        return build(tables)
