"""Generated malformed ndjson whose fate is known, for tests/test_fuzz.py.

Every generated line says what a reader must make of it: a drawing it must parse to
(:class:`Good`) or the :class:`~rasterize.drawings.NdjsonError` kind it must fail with
(:class:`Bad`). Lines start from real drawings of the mirror and are mutated one way each.
Files add the file-level hazards -- a BOM, CRLF, a missing final newline, a truncated last
line, gzip with a truncated tail -- and know how many lines a reader can still see.
:func:`check_file` reads a file both ways (``raise`` and ``skip``) and checks every line's
fate; :func:`check_renders` renders the good ones.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import random
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from rasterize.drawings import Drawing, NdjsonError, SkipLog, parse_record, read_ndjson
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
