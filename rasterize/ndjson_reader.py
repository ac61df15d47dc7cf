"""Google's ndjson files of drawings: a streaming reader that checks every line.

The reader accepts both of Google's stroke formats (``rasterize.drawings``), plain or
gzip-compressed, one line at a time, so memory stays flat however large the file.
``drawing`` is the only key a record must have; Google's metadata keys are kept when present.
Every problem is reported as ``FILE:LINE: reason``; with ``on_error="skip"`` the reader keeps
going and a :class:`SkipLog` counts what it skipped and why. A drawing of more than
:data:`~rasterize.drawings.MAX_POINTS_PER_DRAWING` points or
:data:`~rasterize.drawings.MAX_STROKES_PER_DRAWING` strokes is a bad line too
(``too-many-points``, ``too-many-strokes``), and so is a line longer than
:data:`MAX_LINE_BYTES` (``too-long-line``), which is skipped without being read whole.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from rasterize.drawings import (
    MAX_POINTS_PER_DRAWING,
    MAX_STROKES_PER_DRAWING,
    METADATA_KEYS,
    Drawing,
)

ON_ERROR_MODES = ("raise", "skip")
# The longest line a reader takes (its newline not counted); a longer one is a bad line
# (too-long-line), skipped in bounded pieces without being read whole. Far above any real
# line (the mirror's longest: 37,211 bytes, raw palm tree:15; a drawing at the point limit
# takes at most about 8 MB, of raw floats), low enough that no line puts gigabytes in memory.
MAX_LINE_BYTES = 16 << 20
_BOM = b"\xef\xbb\xbf"


class NdjsonError(ValueError):
    """A bad line: ``str(error)`` is ``FILE:LINE: reason``."""

    def __init__(self, path: str | os.PathLike, line: int, reason: str, kind: str):
        self.path, self.line, self.reason, self.kind = os.fspath(path), line, reason, kind
        super().__init__(f"{self.path}:{line}: {reason}")


class SkipLog:
    """What ``on_error="skip"`` skipped: counts by kind and the first few messages."""

    max_examples = 5  # enough to diagnose; bounded so a file of garbage costs no memory

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []

    def add(self, error: NdjsonError) -> None:
        self.counts[error.kind] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    def __len__(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "skipped 0 lines"
        kinds = ", ".join(f"{kind}: {n}" for kind, n in self.counts.most_common())
        return f"skipped {len(self)} lines ({kinds}); first: " + "; ".join(self.examples)


class LineError(Exception):
    """A bad line, without file context: readers turn it into an :class:`NdjsonError`."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


_NUMBER_TYPES = {int, float}  # exact types: bool is an int subclass and must not pass


def _check_numbers(values: Any, what: str) -> None:
    if not isinstance(values, list):
        raise LineError("bad-stroke", f"{what} is {type(values).__name__}, expected a list")
    if not set(map(type, values)) <= _NUMBER_TYPES:  # one C-level pass over the values
        bad = next(v for v in values if type(v) not in _NUMBER_TYPES)
        raise LineError("non-numeric", f"{what} holds non-numeric value {bad!r:.40}")


def _stroke_columns(stroke: list, i: int) -> np.ndarray:
    """A validated stroke as a float64 ``(2 or 3, n)`` array of its x, y (and t) lists."""
    for k, values in enumerate(stroke):
        _check_numbers(values, f"stroke {i} {'xyt'[k]}")
    lengths = sorted({len(values) for values in stroke})
    if len(lengths) != 1:
        raise LineError("ragged", f"stroke {i} has x/y/t of different lengths {lengths}")
    if not lengths[0]:
        raise LineError("empty-stroke", f"stroke {i} has no points")
    try:
        columns = np.array(stroke, dtype=np.float64)
    except OverflowError:  # a Python int beyond float range (parse_record of a dict)
        columns = None
    if columns is None or not np.isfinite(columns).all():
        raise LineError("non-finite", f"stroke {i} holds a value that is not finite")
    return columns


def _all_columns(raw_strokes: list) -> tuple[np.ndarray, np.ndarray | None, list[int]] | None:
    """All strokes' points as one float64 ``(N, 2)`` array, their times ``(N,)`` or None,
    and each stroke's end index; None if anything is amiss, for the per-stroke checks to
    name. Why: one list concatenation, type check and array conversion per drawing cost
    about half of doing them stroke by stroke, and parsing was slower than rendering."""
    first = raw_strokes[0]
    arity = len(first) if type(first) is list else 0
    if arity not in (2, 3):
        return None
    flat: list[list] = [[] for _ in range(arity)]
    ends, total = [], 0
    for stroke in raw_strokes:
        if type(stroke) is not list or len(stroke) != arity:
            return None
        count = len(stroke[0]) if type(stroke[0]) is list else 0
        for column, values in zip(flat, stroke, strict=True):
            if type(values) is not list or len(values) != count:
                return None
            column += values
        if not count:
            return None
        total += count
        ends.append(total)
    kinds = set(map(type, flat[0]))
    for column in flat[1:]:
        kinds.update(map(type, column))
    if not kinds <= _NUMBER_TYPES:
        return None
    points = np.empty((total, 2))
    try:
        points[:, 0], points[:, 1] = flat[0], flat[1]
        times = np.array(flat[2], dtype=np.float64) if arity == 3 else None
    except OverflowError:  # an int beyond float range
        return None
    if float in kinds and not (np.isfinite(points).all() and
                               (times is None or np.isfinite(times).all())):
        return None  # ints are always finite: only floats can be NaN or inf
    return points, times, ends


def _checked_strokes(raw_strokes: list) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Strokes (n, 2) and times (n,) or None, validated stroke by stroke (``LineError``)."""
    arity = None
    strokes, times = [], []
    for i, stroke in enumerate(raw_strokes):
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise LineError("bad-stroke", f"stroke {i} is not [[x...], [y...]] or [[x], [y], [t]]")
        if arity is None:
            arity = len(stroke)
        elif len(stroke) != arity:
            raise LineError("ragged", f"stroke {i} has {len(stroke)} lists, stroke 0 has {arity}")
        columns = _stroke_columns(stroke, i)
        strokes.append(np.ascontiguousarray(columns[:2].T))
        if arity == 3:
            times.append(columns[2])
    return strokes, times if arity == 3 else None


def parse_record(record: Any) -> Drawing:
    """Validate one decoded JSON record and build a :class:`Drawing` (raises ``LineError``)."""
    if not isinstance(record, dict):
        raise LineError("not-an-object", f"expected a JSON object, got {type(record).__name__}")
    if "drawing" not in record:
        raise LineError("missing-drawing", "record has no 'drawing' key")
    raw_strokes = record["drawing"]
    if not isinstance(raw_strokes, list):
        raise LineError("bad-drawing", "'drawing' is not a list of strokes")
    if not raw_strokes:
        raise LineError("empty-drawing", "'drawing' has no strokes")
    if len(raw_strokes) > MAX_STROKES_PER_DRAWING:
        raise LineError("too-many-strokes", f"drawing has {len(raw_strokes)} strokes, more "
                                            f"than the limit of {MAX_STROKES_PER_DRAWING}")
    fast = _all_columns(raw_strokes)
    if fast is None:
        strokes, times = _checked_strokes(raw_strokes)  # raises the first problem's error
        count = sum(map(len, strokes))
    else:
        points, all_times, ends = fast
        bounds = list(zip([0, *ends[:-1]], ends, strict=True))
        strokes = [points[start:end] for start, end in bounds]
        times = None if all_times is None else [all_times[start:end] for start, end in bounds]
        count = ends[-1]
    if count > MAX_POINTS_PER_DRAWING:
        raise LineError("too-many-points", f"drawing has {count} points, more than the limit "
                                           f"of {MAX_POINTS_PER_DRAWING}")
    meta = {}
    for key in METADATA_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if key == "recognized":
            if not isinstance(value, bool):
                raise LineError("bad-metadata", f"'recognized' is {value!r:.40}, expected a bool")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key == "key_id":
            value = str(value)  # some mirrors store key_id as a number
        elif not isinstance(value, str):
            raise LineError(
                "bad-metadata", f"'{key}' is {type(value).__name__}, expected a string"
            )
        meta[key] = value
    return Drawing(tuple(strokes), None if times is None else tuple(times), **meta)


def parse_line(line: bytes) -> Drawing:
    """Parse one ndjson line (no file context; raises ``LineError``)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise LineError("bad-json", f"invalid JSON ({error})") from None
    return parse_record(record)


@dataclass(frozen=True)
class LongLine:
    """What :func:`file_lines` gives for a line over :data:`MAX_LINE_BYTES`, not its bytes."""

    size: int  # the line's bytes, its newline not counted


_SKIP_BYTES = 1 << 20  # read at a time while skipping the rest of a long line


def file_lines(stream: BinaryIO) -> Iterator[bytes | LongLine]:
    """The lines of ``stream`` as read from the file (newline included), none read whole if
    it is longer than :data:`MAX_LINE_BYTES`: such a line is a :class:`LongLine`."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while not line.endswith(b"\n") and (line := stream.readline(_SKIP_BYTES)):
            size += len(line)
        yield LongLine(size - line.endswith(b"\n"))


def parse_file_line(raw: bytes | LongLine, lineno: int) -> Drawing:
    """Parse line ``lineno`` (1-based) exactly as read from a file, newline included:
    a BOM on line 1 and CRLF are accepted, a blank line is an error, and a bad last line
    without a newline is reported as a truncated file (raises ``LineError``).

    The one place that frames file lines, for :func:`read_ndjson` and any other reader
    that splits files itself with :func:`file_lines` (e.g. worker processes handed raw lines).
    """
    if isinstance(raw, LongLine):
        raise LineError("too-long-line", f"line has {raw.size} bytes, more than the limit "
                                         f"of {MAX_LINE_BYTES}")
    if lineno == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        raise LineError("blank-line", "blank line")
    try:
        return parse_line(line)
    except LineError as error:
        if not raw.endswith(b"\n") and error.kind == "bad-json":
            hint = "; the last line has no newline: the file looks truncated"
            raise LineError(error.kind, error.reason + hint) from None
        raise


class _GzipLines(gzip.GzipFile):
    """A gzip reader that reports an empty file as truncated.

    Python reads a 0-byte ``.gz`` as an empty stream, but every gzip file has at least a
    10-byte header: an empty one is a cut download, and reading it as no lines would drop
    them silently. Its first line read raises EOFError instead, like any other truncated
    stream, so every reader that iterates lines reports it (``bad-gzip``).
    """

    def __init__(self, path: Path):
        super().__init__(path, "rb")
        self._empty_file = path.stat().st_size == 0

    def readline(self, size: int | None = -1) -> bytes:  # iteration reads through this
        line = super().readline(size)
        if not line and self._empty_file:
            raise EOFError("the compressed file is empty")
        return line


# What reading a line can raise when a compressed stream is truncated or corrupt.
STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def open_binary(path: Path) -> BinaryIO:
    """Lines of a plain or ``.gz`` file, as bytes (an empty ``.gz`` reads as truncated)."""
    return _GzipLines(path) if path.suffix == ".gz" else open(path, "rb")


def read_ndjson(
    path: str | os.PathLike,
    on_error: str = "raise",
    skipped: SkipLog | None = None,
) -> Iterator[Drawing]:
    """Stream the drawings of one ndjson (or ``.ndjson.gz``) file, in file order.

    ``on_error="raise"`` stops at the first bad line with :class:`NdjsonError`;
    ``on_error="skip"`` records it in ``skipped`` (create a :class:`SkipLog` to read the
    counts afterwards) and goes on. A UTF-8 BOM and CRLF line ends are accepted; a blank
    line in the middle of a file is an error (it is no record, and ndjson has none).
    """
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {on_error!r}")
    path = Path(path)
    log = skipped if skipped is not None else SkipLog()

    def fail(lineno: int, kind: str, reason: str) -> None:
        error = NdjsonError(path, lineno, reason, kind)
        if on_error == "raise":
            raise error
        log.add(error)

    with open_binary(path) as stream:
        lineno = 0
        lines = file_lines(stream)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except STREAM_ERRORS as error:
                # A truncated or corrupt gzip tail: nothing after it can be read.
                fail(lineno + 1, "bad-gzip", f"compressed stream is corrupt or truncated ({error})")
                return
            lineno += 1
            try:
                yield parse_file_line(line, lineno)
            except LineError as error:
                fail(lineno, error.kind, error.reason)


__all__ = [
    "MAX_LINE_BYTES",
    "ON_ERROR_MODES",
    "STREAM_ERRORS",
    "LineError",
    "LongLine",
    "NdjsonError",
    "SkipLog",
    "file_lines",
    "open_binary",
    "parse_file_line",
    "parse_line",
    "parse_record",
    "read_ndjson",
]
