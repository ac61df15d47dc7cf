"""Generated bad input whose fate is known, for tests/test_fuzz.py: malformed ndjson (issue 6),
then spoiled configs and checkpoints (issue 10, item 8).

Every generated line says what a reader must make of it: a drawing it must parse to
(:class:`Good`) or the :class:`~rasterize.ndjson_reader.NdjsonError` kind it must fail with
(:class:`Bad`). Lines start from real drawings of the mirror and are mutated one way each.
Files add the file-level hazards -- a BOM, CRLF, a missing final newline, a truncated last
line, gzip with a truncated tail -- and know how many lines a reader can still see.
:func:`check_file` reads a file both ways (``raise`` and ``skip``) and checks every line's
fate; :func:`check_renders` renders the good ones.

Configs and checkpoints (the last section): each TOML config (``train`` and ``compare``) and
each checkpoint is spoiled one way and knows whether it loads or which one-line error must name
its file and field (:func:`check_config_case`, :func:`run_checkpoint_fuzz`).

Longer than 450 lines: it is the catalogue of every mutation the fuzz tests run, one short
generator per kind of damage next to the fate it predicts; the ndjson half alone is that long.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import math
import random
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from rasterize.drawings import Drawing
from rasterize.ndjson_reader import NdjsonError, SkipLog, parse_record, read_ndjson
from rasterize.render import render
from rasterize.simplify import align_and_scale

_BOM = b"\xef\xbb\xbf"
_SENTINEL = "__fuzz_sentinel__"  # a string value later replaced by raw bytes
# Google's base drawings: raw ones (with times) and simplified ones, and culture records
# (only word, countrycode and drawing).
_BASE_FILES = (
    "full/raw/cat.ndjson",
    "full/raw/zigzag.ndjson",
    "full/raw/house plant.ndjson",
    "full/raw/The Eiffel Tower.ndjson",
    "full/simplified/eye.ndjson",
    "full/simplified/bicycle.ndjson",
    "full/simplified/mouth.ndjson",
    "extra/culture/sun.ndjson",
)


@dataclass(frozen=True)
class Base:
    record: dict  # the decoded JSON record of a real line
    drawing: Drawing  # what it parses to


@dataclass(frozen=True)
class Good:
    mutation: str
    drawing: Drawing  # what the line must parse to
    reference: Drawing | None = None  # its render must equal this one's (None: no check)


@dataclass(frozen=True)
class Bad:
    mutation: str
    kind: str  # the NdjsonError kind the line must fail with


Expectation = Good | Bad


def load_bases(mirror: Path, per_file: int = 12) -> list[Base]:
    bases = []
    for name in _BASE_FILES:
        with open(mirror / name, "rb") as lines:
            for line in itertools.islice(lines, per_file):
                record = orjson.loads(line)
                bases.append(Base(record, parse_record(record)))
    return bases


# -- one line: a real record, mutated one way ------------------------------------------------


def _dump(record: object) -> bytes:
    return orjson.dumps(record)


def _with_drawing(base: Base, strokes: list) -> dict:
    record = copy.deepcopy(base.record)
    record["drawing"] = strokes
    return record


def _drawing(strokes: list, metadata: dict) -> Drawing:
    """The drawing a valid ``drawing`` value must parse to."""
    arrays = tuple(
        np.column_stack([np.asarray(s[0], float), np.asarray(s[1], float)]) for s in strokes
    )
    times = tuple(np.asarray(s[2], float) for s in strokes) if len(strokes[0]) == 3 else None
    return Drawing(arrays, times, **metadata)


def _arity(base: Base) -> int:
    return len(base.record["drawing"][0])


Mutation = Callable[[random.Random, Base], tuple[bytes, Expectation]]


def verbatim(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    return _dump(base.record), Good("verbatim", base.drawing)


def extra_keys(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    record = dict(base.record)
    for i in range(rng.randint(1, 3)):
        record[f"extra{i}"] = rng.choice([None, 1, "x", [1, [2]], {"drawing": []}, 1e308])
    return _dump(record), Good("extra-keys", base.drawing)


def drawing_only(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = base.record["drawing"]
    return _dump({"drawing": strokes}), Good("drawing-only", _drawing(strokes, {}))


def shuffled_keys(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    items = list(base.record.items())
    rng.shuffle(items)
    return _dump(dict(items)), Good("shuffled-keys", base.drawing)


def numeric_key_id(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    key_id = int(base.record.get("key_id", rng.randrange(10**15, 10**16)))
    record = {**base.record, "key_id": key_id}
    metadata = {**base.drawing.metadata(), "key_id": str(key_id)}
    return _dump(record), Good("numeric-key-id", _drawing(record["drawing"], metadata))


def padded(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    pad = rng.choice([b" ", b"\t", b"  \t"])
    return pad + _dump(base.record) + pad, Good("whitespace-padded", base.drawing)


def float_coordinates(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = [[[float(v) for v in column] for column in s] for s in base.record["drawing"]]
    return _dump(_with_drawing(base, strokes)), Good("float-coordinates", base.drawing)


def single_point_stroke(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = copy.deepcopy(base.record["drawing"])
    i = rng.randrange(len(strokes))
    strokes[i] = [column[:1] for column in strokes[i]]
    record = _with_drawing(base, strokes)
    return _dump(record), Good("single-point-stroke", _drawing(strokes, base.drawing.metadata()))


def affine(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    """Huge, tiny or negative coordinates: a uniform scale and a shift that makes them
    negative. Normalising must undo it, so the render must be the base drawing's."""
    scale = rng.choice([1.0, 10.0 ** rng.uniform(-250, 300)])
    shift = -scale * rng.uniform(1.0, 1e6), -scale * rng.uniform(1.0, 1e6)
    strokes = copy.deepcopy(base.record["drawing"])
    for stroke in strokes:
        for k in (0, 1):
            stroke[k] = (np.asarray(stroke[k], float) * scale + shift[k]).tolist()
    mutation = "negative-coordinates" if scale == 1.0 else "huge-or-tiny-coordinates"
    expected = _drawing(strokes, base.drawing.metadata())
    return _dump(_with_drawing(base, strokes)), Good(mutation, expected, base.drawing)


def cut(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    payload = _dump(base.record)
    return payload[: rng.randint(1, len(payload) - 2)], Bad("cut-line", "bad-json")


_GARBAGE = (
    b"}{",
    b"{'word': 'cat'}",
    b"{drawing: []}",
    b"undefined",
    b"\xff\xfe\x00",
    b"[" * 2000,
    b'{"drawing": [[[1, 2], [3, 4]]]} trailing',
    b'{"drawing": [[[1, 2], [3, 4]]]}\x00',
)


def garbage(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    return rng.choice(_GARBAGE), Bad("garbage", "bad-json")


def nonfinite_literal(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = copy.deepcopy(base.record["drawing"])
    stroke = rng.choice(strokes)
    column = stroke[rng.randrange(len(stroke))]
    column[rng.randrange(len(column))] = _SENTINEL
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"nan"])
    payload = _dump(_with_drawing(base, strokes)).replace(f'"{_SENTINEL}"'.encode(), literal)
    return payload, Bad("nan-or-inf", "bad-json")


def invalid_utf8(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    payload = _dump({**base.record, "word": _SENTINEL})
    return payload.replace(_SENTINEL.encode(), b"\xff\xfecat"), Bad("invalid-utf8", "bad-json")


def bom_inside(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    """A BOM anywhere but at the start of the file is no JSON (never used on line 1)."""
    return _BOM + _dump(base.record), Bad("bom-not-at-start", "bad-json")


def not_an_object(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    value = rng.choice([list(base.record.values()), 42, "drawing", None, True, []])
    return _dump(value), Bad("not-an-object", "not-an-object")


def missing_drawing(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    record = {k: v for k, v in base.record.items() if k != "drawing"}
    return _dump(record), Bad("missing-drawing", "missing-drawing")


def bad_drawing(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    value = rng.choice(["[[[1],[2]]]", 7, {"x": [1]}, None, 1.5])
    return _dump(_with_drawing(base, value)), Bad("drawing-not-a-list", "bad-drawing")


def empty_drawing(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    return _dump(_with_drawing(base, [])), Bad("empty-drawing", "empty-drawing")


def bad_stroke(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = copy.deepcopy(base.record["drawing"])
    i = rng.randrange(len(strokes))
    x, *rest = strokes[i]
    strokes[i] = rng.choice([5, "s", [], [x], [x, x, x, x], [len(x), *rest], [{"x": x}, *rest]])
    return _dump(_with_drawing(base, strokes)), Bad("bad-stroke", "bad-stroke")


def ragged(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = copy.deepcopy(base.record["drawing"])
    i = rng.randrange(len(strokes))
    how = rng.choice(["short", "long", "arity"])
    if how == "short":  # one list of the stroke loses its last value
        column = rng.randrange(len(strokes[i]))
        strokes[i][column] = strokes[i][column][:-1]
    elif how == "long":
        strokes[i][-1] = strokes[i][-1] + [strokes[i][-1][-1]]
    else:  # a stroke with [x, y] among [x, y, t] strokes, or the other way round
        if len(strokes) == 1:
            strokes.append(copy.deepcopy(strokes[0]))
        j = rng.randrange(1, len(strokes))
        strokes[j] = strokes[j][:2] if len(strokes[j]) == 3 else [*strokes[j], strokes[j][0]]
    return _dump(_with_drawing(base, strokes)), Bad(f"ragged-{how}", "ragged")


def non_numeric(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = copy.deepcopy(base.record["drawing"])
    stroke = rng.choice(strokes)
    column = stroke[rng.randrange(len(stroke))]
    column[rng.randrange(len(column))] = rng.choice(["12", True, False, None, [1], {"v": 1}])
    return _dump(_with_drawing(base, strokes)), Bad("string-or-null-coordinate", "non-numeric")


def empty_stroke(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    strokes = copy.deepcopy(base.record["drawing"])
    strokes[rng.randrange(len(strokes))] = [[] for _ in range(_arity(base))]
    return _dump(_with_drawing(base, strokes)), Bad("empty-stroke", "empty-stroke")


def bad_metadata(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    key, value = rng.choice(
        [("recognized", "true"), ("recognized", 1), ("word", 5), ("word", ["cat"]),
         ("countrycode", 12), ("timestamp", 1490000000), ("key_id", [1])]
    )  # fmt: skip
    return _dump({**base.record, key: value}), Bad("bad-metadata", "bad-metadata")


def blank(rng: random.Random, base: Base) -> tuple[bytes, Expectation]:
    return rng.choice([b"", b" ", b"\t", b"   "]), Bad("blank-line", "blank-line")


GOOD_MUTATIONS: tuple[Mutation, ...] = (
    verbatim, extra_keys, drawing_only, shuffled_keys, numeric_key_id, padded,
    float_coordinates, single_point_stroke, affine, affine,
)  # fmt: skip
BAD_MUTATIONS: tuple[Mutation, ...] = (
    cut, garbage, nonfinite_literal, invalid_utf8, bom_inside, not_an_object, missing_drawing,
    bad_drawing, empty_drawing, bad_stroke, ragged, non_numeric, empty_stroke, bad_metadata,
    blank,
)  # fmt: skip


def fuzz_line(rng: random.Random, bases: Sequence[Base], first: bool) -> tuple[bytes, Expectation]:
    """One line, good or bad with equal odds (``first``: it will be the file's line 1)."""
    pool = GOOD_MUTATIONS if rng.random() < 0.5 else BAD_MUTATIONS
    mutation = rng.choice([m for m in pool if not (first and m is bom_inside)])
    return mutation(rng, rng.choice(bases))


# -- one file: lines plus file-level hazards -------------------------------------------------


@dataclass(frozen=True)
class FuzzFile:
    name: str
    data: bytes  # the file's bytes, compressed if the name ends with .gz
    expected: tuple[Expectation, ...]  # one per line of the uncompressed text
    readable: int  # lines a reader gets before a truncated gzip stream breaks
    stream_cut: bool  # a gzip file cut short: the reader must report it after `readable`
    final_newline: bool  # False: the last line has no newline (a truncation hint is due)

    @property
    def lost(self) -> int:
        """Lines after the break of a cut stream: reported together as one bad-gzip."""
        return len(self.expected) - self.readable


def fuzz_file(rng: random.Random, bases: Sequence[Base], index: int) -> FuzzFile:
    lines = [fuzz_line(rng, bases, first=i == 0) for i in range(rng.randint(1, 25))]
    final_newline = rng.random() < 0.75
    if rng.random() < 0.15:  # a writer died mid-line: the last line is cut, no newline
        payload, _ = cut(rng, rng.choice(bases))
        lines[-1] = payload, Bad("truncated-last-line", "bad-json")
        final_newline = False
    if lines[-1][0] == b"":  # an empty last line exists only if a newline ends it
        final_newline = True
    if rng.random() < 0.15:
        lines[0] = _BOM + lines[0][0], lines[0][1]
    newline = b"\r\n" if rng.random() < 0.25 else b"\n"
    text = newline.join(payload for payload, _ in lines) + (newline if final_newline else b"")
    expected = tuple(expectation for _, expectation in lines)
    if rng.random() >= 0.3:
        return FuzzFile(f"f{index:05d}.ndjson", text, expected, len(lines), False, final_newline)
    data = gzip.compress(text, mtime=0)
    if rng.random() < 0.5:
        return FuzzFile(f"f{index:05d}.ndjson.gz", data, expected, len(lines), False, final_newline)
    data = data[: rng.randrange(len(data))]
    readable = zlib.decompressobj(wbits=31).decompress(data).count(b"\n")
    return FuzzFile(f"f{index:05d}.ndjson.gz", data, expected, readable, True, final_newline)


def fuzz_files(seed: int, count: int, bases: Sequence[Base]) -> list[FuzzFile]:
    rng = random.Random(seed)
    return [fuzz_file(rng, bases, i) for i in range(count)]


# -- checking a file's fate ------------------------------------------------------------------


@dataclass
class Tally:
    """Counts by outcome over many files."""

    files: int = 0
    lines: int = 0
    rendered: Counter = field(default_factory=Counter)  # good lines by mutation
    skipped: Counter = field(default_factory=Counter)  # bad lines by NdjsonError kind
    lost_after_cut: int = 0  # lines behind a truncated gzip stream (one bad-gzip each file)
    raised: Counter = field(default_factory=Counter)  # raise mode: first error kind, or none

    def summary(self) -> str:
        return (
            f"{self.files} files, {self.lines} lines: rendered {sum(self.rendered.values())}, "
            f"skipped {sum(self.skipped.values())}, lost after a gzip cut {self.lost_after_cut}"
            f"\n  rendered by mutation: {dict(self.rendered.most_common())}"
            f"\n  skipped by kind: {dict(self.skipped.most_common())}"
            f"\n  raise mode, first error: {dict(self.raised.most_common())}"
        )


def same_drawing(a: Drawing, b: Drawing) -> bool:
    def same_arrays(x, y):
        if x is None or y is None:
            return x is y
        return len(x) == len(y) and all(map(np.array_equal, x, y))

    return (
        same_arrays(a.strokes, b.strokes)
        and same_arrays(a.times, b.times)
        and (a.metadata() == b.metadata())
    )


class RecordingLog(SkipLog):
    """A SkipLog that also keeps every error, to check each one's line, kind and text."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[NdjsonError] = []

    def add(self, error: NdjsonError) -> None:
        super().add(error)
        self.errors.append(error)


def check_error(path: Path, case: FuzzFile, error: NdjsonError, lineno: int, kind: str) -> None:
    """The error names this file and line, has the expected kind, and a line error says the
    file looks truncated exactly when a bad last line has no newline."""
    assert (error.line, error.kind) == (lineno, kind), f"{error} (expected line {lineno}: {kind})"
    assert str(error).startswith(f"{path}:{lineno}: ") and error.reason, str(error)
    if kind != "bad-gzip":
        last_without_newline = lineno == len(case.expected) and not case.final_newline
        hinted = "looks truncated" in error.reason
        assert hinted == (kind == "bad-json" and last_without_newline), str(error)


def _line_fates(case: FuzzFile) -> list[tuple[int, Expectation]]:
    return list(enumerate(case.expected[: case.readable], start=1))


def check_skip_mode(path: Path, case: FuzzFile, tally: Tally) -> list[tuple[Drawing, Good]]:
    """Read with ``on_error="skip"``: every readable good line is yielded as expected, every
    bad one counted under its kind, a cut stream reported once; nothing else."""
    log = RecordingLog()
    drawings = list(read_ndjson(path, on_error="skip", skipped=log))
    fates = _line_fates(case)
    goods = [e for _, e in fates if isinstance(e, Good)]
    bads = [(n, e.kind) for n, e in fates if isinstance(e, Bad)]
    if case.stream_cut:
        bads.append((case.readable + 1, "bad-gzip"))
    assert len(drawings) == len(goods), f"{path}: {len(drawings)} drawings, {len(goods)} good lines"
    for drawing, good in zip(drawings, goods, strict=True):
        assert same_drawing(drawing, good.drawing), f"{path}: {good.mutation} line misread"
    assert len(log.errors) == len(bads), f"{path}: skipped {log.counts}, expected {bads}"
    for error, (lineno, kind) in zip(log.errors, bads, strict=True):
        check_error(path, case, error, lineno, kind)
    # nothing dropped silently: every line is rendered, skipped, or behind a reported cut
    assert len(drawings) + len(log) - case.stream_cut + case.lost == len(case.expected)
    tally.files += 1
    tally.lines += len(case.expected)
    tally.rendered.update(g.mutation for g in goods)
    tally.skipped.update(kind for _, kind in bads)
    tally.lost_after_cut += case.lost
    return list(zip(drawings, goods, strict=True))


def check_raise_mode(path: Path, case: FuzzFile, tally: Tally) -> None:
    """Read with ``on_error="raise"``: the good lines up to the first bad one, then an
    NdjsonError naming this file and that line, with a truncation hint when due."""
    fates = _line_fates(case)
    first_bad = next(((n, e.kind) for n, e in fates if isinstance(e, Bad)), None)
    if first_bad is None and case.stream_cut:
        first_bad = (case.readable + 1, "bad-gzip")
    drawings = []
    try:
        for drawing in read_ndjson(path):
            drawings.append(drawing)
    except NdjsonError as error:
        assert first_bad is not None, f"{path}: unexpected {error}"
        check_error(path, case, error, *first_bad)
        tally.raised[error.kind] += 1
    else:
        assert first_bad is None, f"{path}: no error, expected {first_bad}"
        tally.raised["none"] += 1
    good_before = [
        e for n, e in fates if isinstance(e, Good) and (not first_bad or n < first_bad[0])
    ]
    assert len(drawings) == len(good_before), f"{path}: {len(drawings)} drawings before the error"
    for drawing, good in zip(drawings, good_before, strict=True):
        assert same_drawing(drawing, good.drawing), f"{path}: {good.mutation} line misread"


def check_file(directory: Path, case: FuzzFile, tally: Tally) -> list[tuple[Drawing, Good]]:
    """Write the case, read it both ways; returns its good drawings with their expectations."""
    path = directory / case.name
    path.write_bytes(case.data)
    check_raise_mode(path, case, tally)
    return check_skip_mode(path, case, tally)


def check_renders(goods: Sequence[tuple[Drawing, Good]]) -> None:
    """Every good drawing renders with ink; a transformed one exactly like the drawing it came
    from: normalising undoes a uniform scale and shift up to float rounding (relative 1e-10
    at a shift of 1e6 times the scale), far below what the rasterizer resolves."""
    images = render([d for d, _ in goods])
    assert images.shape == (len(goods), 28, 28) and images.dtype == np.uint8
    inkless = [g.mutation for image, (_, g) in zip(images, goods, strict=True) if image.max() == 0]
    assert not inkless, f"renders without ink: {Counter(inkless)}"
    checked = [(i, g) for i, (_, g) in enumerate(goods) if g.reference is not None]
    references = render([align_and_scale(g.reference) for _, g in checked])
    np.testing.assert_array_equal(images[[i for i, _ in checked]], references)


# -- configs and checkpoints (issue 10, item 8) ------------------------------------------------
# Generated TOML configs (train and compare) and checkpoints, each spoiled one way with a known
# fate: it loads, or it fails with a one-line ConfigError that names the file and the field or
# key. Bad values are drawn from each field's declared type and range (wrong TOML types,
# numbers outside the range -- far enough outside that a missing check would allocate
# visibly --, NaN and infinities, control characters, unknown choices and keys).

_CONTROL = ("\x00", "\x07", "\x1b", "\n", "\r", "\t", "\x7f", "\x85")
_OTHER_TYPES = {int: [True, False, 2.5, 2.0, "7", [1], {"a": 1}],
                float: [True, "0.1", [0.1], {"a": 0.1}],
                bool: [1, 0, "true", 1.0, [True]],
                str: [5, 1.5, True, ["x"], {"a": "x"}]}


@dataclass(frozen=True)
class Spoiled:
    """A value put where a field's value belongs, and what the error must name."""

    value: object
    reason: str  # wrong-type, out-of-range, not-finite, control-char, bad-choice, ...
    path: str  # the field as the error names it, relative to the field's table
    valid: bool = False  # True: the value is allowed (the config must load)


def _field_kinds(cls) -> dict[str, tuple[object, dict]]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], dict(f.metadata)) for f in dataclasses.fields(cls)}


def _scalar(hint):
    """``int | None`` -> int; other hints as they are."""
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def spoil(rng: random.Random, name: str, hint, meta: dict, current, item: bool = False
          ) -> Spoiled:
    """A bad value for field ``name`` (declared ``hint`` with ``meta``), or now and then a
    good one: an int where a float belongs, a number low in its range (low: the fields that
    constrain each other -- valid + test fractions, a target's low and high -- stay
    consistent; ``item``: a list item, whose neighbours are not known, gets no such value)."""
    import typing

    from sketchgen.config import MAX_TEXT

    hint = _scalar(hint)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        item = typing.get_args(hint)[0]
        if meta.get("max_items") and rng.random() < 0.2:
            return Spoiled([f"c{i}" for i in range(meta["max_items"] + 1)], "too-many", name)
        if rng.random() < 0.5 and current:
            index = rng.randrange(len(current))
            inner = spoil(rng, f"{name}[{index}]", item, meta, current[index], item=True)
            value = list(current)
            value[index] = inner.value
            return Spoiled(value, inner.reason, inner.path, inner.valid)
        return Spoiled(rng.choice([5, "x", {"a": 1}, True]), "wrong-type", name)
    if origin is dict:
        return Spoiled(rng.choice([3, "x", [1], True]), "wrong-type", name)
    within = meta.get("within")
    reasons = ["wrong-type"]
    if hint in (int, float) and within is not None:
        reasons += ["out-of-range", "out-of-range"] + ["in-range"] * (not item)
    if hint is float:
        reasons += ["not-finite", "int-for-float"]
    if hint is str:
        reasons += ["control-char", "too-long"] + ["bad-choice"] * bool(meta.get("choices"))
    reason = rng.choice(reasons)
    if reason == "wrong-type":
        return Spoiled(rng.choice(_OTHER_TYPES[hint]), reason, name)
    if reason == "out-of-range":
        if rng.random() < 0.5:
            low = within.low
            value = low if within.low_open else low - rng.choice([1, 1, 10, 1000, 10**12])
        else:
            high = within.high
            value = high if within.high_open else rng.choice(
                [v for v in (high + 1, high * rng.randint(2, 20), 10**12, 10**30) if v > high])
        return Spoiled(float(value) if hint is float else int(value), reason, name)
    if reason == "in-range":
        low = within.low
        value = (rng.uniform(low, low + 0.4 * min(1, within.high - low)) if hint is float
                 else rng.randint(int(low), int(min(within.high, low + 200))))
        return Spoiled(value if value in within else current, reason, name, valid=True)
    if reason == "not-finite":
        return Spoiled(rng.choice([math.nan, math.inf, -math.inf]), reason, name)
    if reason == "int-for-float":
        current = 1.0 if current is None else current  # an optional number (seconds = None)
        return Spoiled(int(current) if float(current).is_integer() else current, reason, name,
                       valid=True)
    if reason == "too-long":
        return Spoiled("x" * (MAX_TEXT + rng.choice([1, 1_000, 100_000])), reason, name)
    if reason == "bad-choice":
        return Spoiled(rng.choice(["", "other", meta["choices"][0].upper()]), reason, name)
    text = str(current or "x")
    at = rng.randrange(len(text) + 1)
    return Spoiled(text[:at] + rng.choice(_CONTROL) + text[at:], reason, name)


def toml_text(table: dict) -> str:
    """``table`` as TOML: scalars and lists first, then sub-tables and arrays of tables."""
    def value(v) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json_key(k)} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else {math.inf: "inf", -math.inf: "-inf"}.get(v, repr(v))
        if isinstance(v, str):  # JSON escapes are TOML's; TOML also wants DEL escaped
            return orjson.dumps(v).decode().replace("\x7f", "\\u007f")
        return repr(v)

    def json_key(key: str) -> str:
        return orjson.dumps(key).decode()

    plain = {k: v for k, v in table.items() if not _is_tables(v)}
    lines = [f"{json_key(k)} = {value(v)}" for k, v in plain.items()]
    for key, tables in table.items():
        if isinstance(tables, dict) and key not in plain:
            lines += ["", f"[{json_key(key)}]"] + [
                f"{json_key(k)} = {value(v)}" for k, v in tables.items()]
        elif key not in plain:
            for item in tables:
                lines += ["", f"[[{json_key(key)}]]"] + [
                    f"{json_key(k)} = {value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_tables(value) -> bool:
    return (isinstance(value, dict) and all(not isinstance(v, dict) for v in value.values())
            and bool(value) or isinstance(value, list) and bool(value)
            and all(isinstance(v, dict) for v in value))


@dataclass(frozen=True)
class ConfigCase:
    kind: str  # "train" or "compare"
    text: str  # the TOML file
    reason: str  # how it was spoiled ("valid": not at all)
    expected: str | None  # what the one-line error must contain; None: the config loads
    prefixed: bool = True  # the error starts with the file's path


TRAIN_BASE = {"model": "dcgan", "categories": ["eye", "mouth"], "per_class": 20, "steps": 1,
              "batch_size": 4, "device": "cpu", "progress": False}
TRAIN_OPTIONS = {"dcgan": {"width": 8}, "sketch-rnn": {"enc_rnn_size": 16, "dec_rnn_size": 16}}
COMPARE_BASE = {"name": "fuzz", "categories": ["eye", "mouth"], "per_class": 20,
                "n_samples": 10, "calibration": False}
COMPARE_MODELS = [{"model": "dcgan", "steps": 2, "batch_size": 4, "options": {"width": 8}},
                  {"model": "sketch-rnn", "steps": 2, "batch_size": 4,
                   "options": {"enc_rnn_size": 16}}]


def _spoiled_table(rng: random.Random, table: dict, cls, skip: tuple[str, ...] = ()
                   ) -> tuple[dict, Spoiled]:
    kinds = {k: v for k, v in _field_kinds(cls).items() if k not in skip}
    name = rng.choice(sorted(kinds))
    hint, meta = kinds[name]
    spoiled = spoil(rng, name, hint, meta, table.get(name, _default(cls, name)))
    return {**table, name: spoiled.value}, spoiled


def _default(cls, name: str):
    import dataclasses

    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else None


def _expectation(spoiled: Spoiled, where: str) -> str | None:
    if spoiled.valid:
        return None
    return f"{where}{spoiled.path} must be"


def train_config_case(rng: random.Random, out: Path) -> ConfigCase:
    from sketchgen.models import registry
    from sketchgen.training.config import TrainConfig

    model = rng.choice(sorted(TRAIN_OPTIONS))
    table = {**TRAIN_BASE, "model": model, "out": str(out),
             "model_options": dict(TRAIN_OPTIONS[model])}
    how = rng.random()
    if how < 0.08:
        return ConfigCase("train", "steps = 3\n" + toml_text(table), "toml-syntax",
                          "Cannot overwrite a value")
    if how < 0.16:
        table["lerning_rate"] = 1
        return ConfigCase("train", toml_text(table), "unknown-key", "unknown config field(s)")
    if how < 0.24:
        table["model_options"]["widht"] = 8
        return ConfigCase("train", toml_text(table), "unknown-option", "has no option(s) widht",
                          prefixed=False)
    if how < 0.55:  # a model option: checked by the model's config once the model is known
        options_class = type(registry.get_model(model).default_config())
        options, spoiled = _spoiled_table(rng, table["model_options"], options_class)
        table["model_options"] = options
        return ConfigCase("train", toml_text(table), f"option-{spoiled.reason}",
                          _expectation(spoiled, "model_options."), prefixed=False)
    # size, categories and model are checked by the data and the registry, not by ranges alone
    table, spoiled = _spoiled_table(rng, table, TrainConfig, skip=(
        "model_options", "model", "size", "out", "device"))
    if spoiled.valid and spoiled.path in ("batch_size", "steps"):
        table[spoiled.path] = TRAIN_BASE[spoiled.path]  # keep valid runs tiny
    return ConfigCase("train", toml_text(table), f"field-{spoiled.reason}",
                      _expectation(spoiled, ""))


def compare_config_case(rng: random.Random, out: Path) -> ConfigCase:
    from sketchgen.comparison import config as compare
    from sketchgen.evaluation.classifier import ClassifierConfig
    from sketchgen.models import registry

    models = [dict(m, options=dict(m["options"])) for m in COMPARE_MODELS]
    table = {**COMPARE_BASE, "out": str(out), "classifier": {"width": 4}, "models": models}
    part = rng.choice(["top", "classifier", "model", "options", "unknown", "missing"])
    index = rng.randrange(len(models))
    if part == "unknown":
        where, target = rng.choice([("config", table), ("classifier", table["classifier"]),
                                    (f"models[{index}]", models[index])])
        target["sampels"] = 5
        return ConfigCase("compare", toml_text(table), "unknown-key",
                          f"{where}: unknown key(s) sampels")
    if part == "missing":
        key = rng.choice(["steps", "batch_size", "model"])
        del models[index][key]
        return ConfigCase("compare", toml_text(table), "missing-key",
                          f"models[{index}]: missing {key}")
    if part == "top":
        table, spoiled = _spoiled_table(rng, table, compare.CompareConfig,
                                        skip=("models", "classifier", "executor", "name", "out",
                                              "device", "size"))
        where = ""
    elif part == "classifier":
        key = rng.choice([*compare.NETWORK_KEYS, "valid_fraction"])  # the table's keys
        owner = compare.ClassifierSettings if key == "valid_fraction" else ClassifierConfig
        table["classifier"], spoiled = _spoiled_table(rng, table["classifier"], owner, skip=tuple(
            name for name in _field_kinds(owner) if name != key))
        where = "classifier."
    elif part == "model":
        models[index], spoiled = _spoiled_table(rng, models[index], compare.ModelSpec,
                                                skip=("model", "options", "load", "label"))
        if spoiled.valid and spoiled.path in ("batch_size", "steps"):
            models[index][spoiled.path] = COMPARE_MODELS[index][spoiled.path]  # keep it tiny
        where = f"models[{index}]."
    else:
        options_class = type(registry.get_model(models[index]["model"]).default_config())
        models[index]["options"], spoiled = _spoiled_table(rng, models[index]["options"],
                                                           options_class)
        where = f"models[{index}].options."
    return ConfigCase("compare", toml_text(table), f"{part}-{spoiled.reason}",
                      _expectation(spoiled, where))


@dataclass
class OutcomeTally:
    """Cases by reason and outcome ("refused" in one line, or "loaded")."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, outcome: str) -> None:
        self.counts[reason, outcome] += 1

    def total(self, outcome: str | None = None) -> int:
        return sum(n for (_, o), n in self.counts.items() if outcome in (None, o))

    def summary(self, what: str) -> str:
        by_reason = Counter()
        for (reason, outcome), n in self.counts.items():
            by_reason[f"{reason}:{outcome}"] += n
        return (f"{self.total()} {what}: refused {self.total('refused')}, loaded "
                f"{self.total('loaded')}\n  by reason: {dict(sorted(by_reason.items()))}")


def check_config_case(directory: Path, index: int, case: ConfigCase, tally: OutcomeTally) -> None:
    """Load the case as the library and the CLI do: it loads (a valid case) or fails with one
    line naming the file and the field; the CLI exits 2 with that line, before any work."""
    import contextlib
    import io

    from sketchgen import cli
    from sketchgen.comparison.config import load_config
    from sketchgen.comparison.plan import plan_runs
    from sketchgen.errors import ConfigError
    from sketchgen.models import registry
    from sketchgen.training.config import load_toml

    path = directory / f"c{index:05d}-{case.kind}.toml"
    path.write_text(case.text, encoding="utf-8")
    try:
        if case.kind == "train":
            registry.resolve(load_toml(path))
        else:
            plan_runs(load_config(path))
    except ConfigError as error:
        message = str(error)
        assert case.expected is not None, f"{path} ({case.reason}): refused: {message}"
        assert "\n" not in message and case.expected in message, (case.reason, message)
        assert message.startswith(f"{path}: ") or not case.prefixed, message
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main([case.kind, *(["--config"] if case.kind == "train" else []),
                               str(path)])
        assert (status, stderr.getvalue()) == (2, f"sketchgen {case.kind}: error: {message}\n")
        tally.add(case.reason, "refused")
    else:
        assert case.expected is None, f"{path} ({case.reason}): loaded, expected {case.expected}"
        tally.add(case.reason, "loaded")


class Payload:
    """Unpickling it would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@dataclass(frozen=True)
class CheckpointCase:
    reason: str
    expected: str | None  # what the one-line error must contain; None: it loads ("any": either)


def _module_states(state: dict) -> list[dict]:
    """The module state dicts inside a task state: dicts of tensors keyed by dotted names."""
    import torch

    found = []
    for value in state.values():
        if isinstance(value, dict) and value and all(
                isinstance(v, torch.Tensor) for v in value.values()) and all(
                isinstance(k, str) for k in value):
            found.append(value)
    return found


def _moments(state: dict) -> list[dict]:
    """Per-parameter optimizer states (Adam's step and moments) inside a task state."""
    return [entry for value in state.values() if isinstance(value, dict)
            and isinstance(value.get("state"), dict) for entry in value["state"].values()
            if isinstance(entry, dict) and "exp_avg" in entry]


def _other_shape(rng: random.Random, shape: tuple[int, ...]) -> tuple[int, ...]:
    while True:
        other = tuple(rng.randint(1, 6) for _ in range(rng.choice([1, 2, len(shape) or 1])))
        if other != shape:
            return other


def _file_mutation(rng: random.Random, data: bytes, path: Path, marker: Path
                   ) -> tuple[bytes | None, CheckpointCase]:
    import io
    import pickle

    import torch

    how = rng.choice(["truncated", "random-bytes", "text", "empty", "zip-not-torch",
                      "deflated", "code-payload", "pickle-payload", "byte-flip"])
    if how == "truncated":
        return data[: rng.randrange(len(data))], CheckpointCase(how, "not a torch checkpoint")
    if how == "random-bytes":
        return rng.randbytes(rng.randint(1, 5000)), CheckpointCase(how, "not a torch checkpoint")
    if how == "text":
        return b"step = 3\n" * rng.randint(1, 50), CheckpointCase(how, "not a torch checkpoint")
    if how == "empty":
        return b"", CheckpointCase(how, "not a torch checkpoint")
    if how == "pickle-payload":
        return pickle.dumps(Payload(marker)), CheckpointCase(how, "not a torch checkpoint")
    buffer = io.BytesIO()
    if how == "zip-not-torch":
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(rng.choice(["a.txt", "x/data.pkl", "archive/data.pkl"]),
                             rng.randbytes(100))
        return buffer.getvalue(), CheckpointCase(how, "not a torch checkpoint")
    if how == "deflated":
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(
                buffer, "w", compression=zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                target.writestr(info.filename, source.read(info))
        return buffer.getvalue(), CheckpointCase(how, "is compressed")
    if how == "code-payload":
        torch.save({"format": 1, "step": Payload(marker)}, buffer)
        return buffer.getvalue(), CheckpointCase(how, "refused: it holds")
    flipped = bytearray(data)
    flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped), CheckpointCase(how, "any")  # may hit a weight: loads, different


def _dict_mutation(rng: random.Random, checkpoint: dict) -> tuple[object, CheckpointCase]:
    import torch

    from sketchgen.models import registry
    from sketchgen.training.config import TrainConfig

    how = rng.choice(["not-a-dict", "missing-key", "wrong-type", "extra-key", "format", "step",
                      "model", "class-names", "config", "config", "model-config",
                      "model-config", "model-config", "huge-together", "huge-view", "rng",
                      "task-missing", "task-shape", "task-dtype", "task-not-a-tensor",
                      "task-moment", "task-optimizer-setting", "task-foreign-state",
                      "task-generator"])
    c = checkpoint
    if how == "not-a-dict":
        return rng.choice([[1, 2], 5, "x", torch.zeros(3)]), CheckpointCase(how, "expected a dict")
    if how == "missing-key":
        key = rng.choice(["format", "step", "model", "config", "model_config", "class_names",
                          "task", "rng"])
        del c[key]
        return c, CheckpointCase(how, f"missing {key}")
    if how == "wrong-type":
        key = rng.choice(["step", "model", "config", "model_config", "class_names", "task",
                          "rng"])
        c[key] = rng.choice([None, 2.5, [1], True] + ["x"] * (key != "model"))
        return c, CheckpointCase(how, f"{key} must be")
    if how == "extra-key":
        c["notes"] = "made elsewhere"
        return c, CheckpointCase(how, None)
    if how == "format":
        c["format"] = rng.choice([0, 2, 99])
        return c, CheckpointCase(how, f"format {c['format']} is not 1")
    if how == "step":
        c["step"] = rng.choice([-1, 10**10, 2.5, True, "3"])
        return c, CheckpointCase(how, "step must be an integer in [0, 1_000_000_000]")
    if how == "model":
        c["model"] = rng.choice(["stylegan", "", "DCGAN"])
        return c, CheckpointCase(how, "model: unknown model")
    if how == "class-names":
        names = c["class_names"]
        c["class_names"] = rng.choice([[], names + names[:1], [f"c{i}" for i in range(10_001)]])
        return c, CheckpointCase(how, "class_names must be")
    if how == "config":
        kinds = _field_kinds(TrainConfig)
        name = rng.choice([k for k in kinds if k not in ("model", "model_options")])
        spoiled = spoil(rng, name, *kinds[name], c["config"][name])
        c["config"][name] = spoiled.value
        if spoiled.valid:  # in range; sampling does not mind, the architecture may
            return c, CheckpointCase(f"config-{spoiled.reason}", "any")
        return c, CheckpointCase(f"config-{spoiled.reason}", f"config.{spoiled.path} must be")
    if how == "model-config":
        options = type(registry.get_model(c["model"]).default_config())
        kinds = _field_kinds(options)
        name = rng.choice(sorted(kinds))
        spoiled = spoil(rng, name, *kinds[name], c["model_config"][name])
        c["model_config"][name] = spoiled.value
        if spoiled.valid:  # in range: it loads, or the stored weights do not fit the sizes
            return c, CheckpointCase(f"model-config-{spoiled.reason}", "any")
        return c, CheckpointCase(f"model-config-{spoiled.reason}",
                                 f"model_config.{spoiled.path} must be")
    if how == "huge-together":  # each size in range, the model far beyond any memory
        if c["model"] == "sketch-rnn":  # the vae: an encoder too
            c["model_config"].update(mode="vae", enc_rnn_size=4096, dec_rnn_size=4096,
                                     z_size=4096)
        else:
            c["model_config"]["width"], c["config"]["size"] = 1024, 1024
        return c, CheckpointCase(how, "parameters; at most")
    if how == "huge-view":  # one stored value seen as 10**10: no copy of it may be made
        if rng.random() < 0.5:
            c["rng"]["numpy"][1] = torch.zeros(1, dtype=torch.int64).expand(10**10)
            return c, CheckpointCase(how, "rng.numpy[1] declares 10_000_000_000 elements")
        module = rng.choice(_module_states(c["task"]))
        module[rng.choice(sorted(module))] = torch.zeros(1).expand(10**10)
        return c, CheckpointCase(how, "declares 10_000_000_000 elements")
    if how == "rng":
        part = rng.choice(["python", "numpy", "torch"])
        c["rng"][part] = rng.choice([None, [1, 2, 3], torch.zeros(5, dtype=torch.uint8), "x"])
        return c, CheckpointCase(how, "rng: not the RNG states")
    task = c["task"]
    modules = _module_states(task)
    module = rng.choice(modules)
    key = rng.choice(sorted(module))
    if how == "task-missing":
        del module[key]
        return c, CheckpointCase(how, "is missing")
    if how == "task-shape":
        module[key] = torch.zeros(_other_shape(rng, tuple(module[key].shape)))
        return c, CheckpointCase(how, "has shape")
    if how == "task-dtype":
        wanted = torch.float64 if module[key].dtype != torch.float64 else torch.float32
        module[key] = module[key].to(wanted)
        return c, CheckpointCase(how, "has dtype")
    if how == "task-not-a-tensor":
        module[key] = rng.choice([None, [1.0], "x", 3])
        return c, CheckpointCase(how, "must be a tensor")
    if how == "task-moment":
        entry = rng.choice(_moments(task))
        moment = rng.choice(["exp_avg", "exp_avg_sq"])
        entry[moment] = torch.zeros(_other_shape(rng, tuple(entry[moment].shape)))
        return c, CheckpointCase(how, f"state {moment!r} has shape")
    if how in ("task-optimizer-setting", "task-foreign-state"):
        optimizer = rng.choice([v for v in task.values() if isinstance(v, dict)
                                and "param_groups" in v])
        if how == "task-foreign-state":
            optimizer["state"][rng.choice([999, -1, "x"])] = {"exp_avg": torch.zeros(3)}
            return c, CheckpointCase(how, "which is none of its parameters")
        group = optimizer["param_groups"][0]
        key, value = rng.choice([("lr", 1e300), ("lr", math.nan), ("lr", -1.0), ("lr", 0),
                                 ("maximize", True), ("amsgrad", True), ("eps", 1.0),
                                 ("weight_decay", 0.5), ("betas", (0.0, 0.0))])
        group[key] = value
        return c, CheckpointCase(how, "lr must be a number in (0, 1]" if key == "lr"
                                 else f"{key} is {value!r}, the model's settings give")
    task["generator"] = torch.zeros(rng.randint(1, 100), dtype=torch.uint8)
    return c, CheckpointCase(how, "task.generator has shape")


def checkpoint_case(rng: random.Random, base: Path, case_dir: Path) -> CheckpointCase:
    """Write one spoiled copy of the run checkpoint ``base`` to ``case_dir/checkpoint.pt``."""
    import torch

    case_dir.mkdir(parents=True)
    path = case_dir / "checkpoint.pt"
    marker = case_dir.parent / "code-ran"
    if rng.random() < 0.35:
        data, case = _file_mutation(rng, base.read_bytes(), path, marker)
        path.write_bytes(data)
        return case
    checkpoint, case = _dict_mutation(rng, torch.load(base, weights_only=True))
    torch.save(checkpoint, path)
    return case


def check_checkpoint_case(case_dir: Path, case: CheckpointCase, tally: OutcomeTally) -> None:
    """Rebuild the run as sampling does: it loads, or fails in one line naming the file (and,
    for a spoiled key, that key) -- never a traceback, never code run, never a huge tensor."""
    from sketchgen.errors import CheckpointError
    from sketchgen.training.sampling import load_run

    path = case_dir / "checkpoint.pt"
    try:
        load_run(case_dir)
    except CheckpointError as error:
        message = str(error)
        assert case.expected is not None, f"{path} ({case.reason}): refused: {message}"
        assert "\n" not in message and message.startswith(f"{path}: "), message
        assert case.expected == "any" or case.expected in message, (case.reason, message)
        tally.add(case.reason, "refused")
    else:
        assert case.expected in (None, "any"), f"{path} ({case.reason}): loaded"
        tally.add(case.reason, "loaded")
    assert not (case_dir.parent / "code-ran").exists(), "a checkpoint ran code"


def run_checkpoint_fuzz(bases: list[str], directory: str, seed: int, count: int) -> dict:
    """``count`` spoiled checkpoints made from the run checkpoints ``bases``, each checked;
    the outcome counts by reason. Meant to run in a process with a memory cap."""
    rng = random.Random(seed)
    tally = OutcomeTally()
    for index in range(count):
        case_dir = Path(directory) / f"k{index:05d}"
        case = checkpoint_case(rng, Path(rng.choice(bases)), case_dir)
        check_checkpoint_case(case_dir, case, tally)
    return {f"{reason}:{outcome}": n for (reason, outcome), n in tally.counts.items()}
