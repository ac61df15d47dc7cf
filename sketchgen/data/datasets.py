"""Labelled datasets of Quick, Draw! sources, and the split every trainer and evaluator shares.

:func:`load_drawings` and :func:`load_bitmaps` turn a list of sources (category names or data
files, see :mod:`sketchgen.data.sources`) into labelled datasets: the first ``per_class``
records of each class, over HTTP only a head of each file. Bitmaps of strokes are rendered
once and cached on disk, keyed by the file, the render settings and the renderer's code.
:func:`split_indices` gives the train / valid / test split.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

import rasterize
from rasterize.drawings import Drawing
from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING, GOOGLE_SIZE
from rasterize.ndjson_reader import ON_ERROR_MODES, SkipLog, read_ndjson
from rasterize.render import render
from rasterize.sketch_npz import GOOGLE_NPZ_SPLITS, read_sketch_npz
from rasterize.strokes import stroke3_to_drawing
from sketchgen.data.cache import cache_dir
from sketchgen.data.heads import NPY_HEADER_ERRORS, check_limit
from sketchgen.data.sources import (
    FORMATS,
    NDJSON_SUFFIXES,
    STROKE_FORMATS,
    check_format,
    class_name,
    class_names,
    data_suffix,
    fetch,
    is_category,
    locate,
    source_list,
)
from sketchgen.runtime import atomic_write

RENDER_BATCH = 4096  # drawings rendered per call: bounds memory on Google's 100k+-line files


# -- planning and reading sources -----------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    item: str | os.PathLike  # as given: a category name or a path (located again by _take)
    class_name: str


def _suffix_of(item: str | os.PathLike, fmt: str) -> str:
    """The kind of file a checked source stands for, known before anything is downloaded."""
    if is_category(item):
        return data_suffix(Path(FORMATS[fmt]))
    return data_suffix(Path(item))


def _plan(
    items: list,
    fmt: str,
    per_class: int | None,
    mirror: str | os.PathLike | None,
    suffixes: Sequence[str],
) -> tuple[list[_Source], list[str]]:
    """Check the request as a whole and locate every source; each is downloaded later,
    by :func:`_take`, for as many records as its class still needs.

    Sources with the same class name (the category ``sun`` and a file ``sun.ndjson``) share
    one label; ``per_class`` caps each class, filled from its files in the order given.
    """
    check_limit(per_class, "per_class")
    wrong = next((i for i in items if _suffix_of(i, fmt) not in suffixes), None)
    if wrong is not None:
        what = f"the {fmt} file of {wrong!r}" if is_category(wrong) else repr(os.fspath(wrong))
        raise ValueError(f"{what}: expected a {' or '.join(suffixes)} file here")
    paths = [locate(item, fmt, mirror)[0] for item in items]
    seen = [p.resolve() for p in paths]
    if len(set(seen)) != len(seen):
        twice = next(p for p in paths if seen.count(p.resolve()) > 1)
        raise ValueError(f"{twice} is listed more than once")
    plan = [_Source(item, class_name(item)) for item in items]
    return plan, list(class_names(items))


def _add_skips(skipped: SkipLog, counts: dict[str, int], examples: list[str]) -> None:
    skipped.counts.update(counts)
    room = SkipLog.max_examples - len(skipped.examples)
    skipped.examples.extend(examples[: max(room, 0)])


def _take(
    plan: list[_Source],
    per_class: int | None,
    read,
    skipped: SkipLog,
    fmt: str,
    mirror: str | os.PathLike | None,
) -> Iterator[tuple[_Source, object]]:
    """Fetch and read each planned file for what its class has left of ``per_class`` (a
    download is a head of that many records): a class whose first file runs short is topped
    up from its next one, and a head whose bad lines were skipped is made longer by what
    they left missing. Yields (source, records read); ``skipped`` gets the skips."""
    taken: dict[str, int] = {}
    for source in plan:
        used = taken.get(source.class_name, 0)
        limit = None if per_class is None else per_class - used
        if limit == 0:
            continue
        path, held = fetch(source.item, fmt, mirror, None, limit)
        while True:
            log = SkipLog()
            result = read(path, limit, log)
            if held is None or len(result) >= limit:
                break
            path, held = fetch(source.item, fmt, mirror, None, held + limit - len(result))
        _add_skips(skipped, log.counts, log.examples)
        taken[source.class_name] = used + len(result)
        yield source, result


# -- loaders --------------------------------------------------------------------------------


@dataclass
class LabelledDrawings:
    drawings: list[Drawing]
    labels: np.ndarray  # int64, index into class_names
    class_names: list[str]
    skipped: SkipLog = field(default_factory=SkipLog)  # bad lines passed over with on_error="skip"
    # the files' own split of the drawings (indices by split name), when every drawing came
    # from a Sketch-RNN .npz in Google's layout (train, valid, test); else None
    splits: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.drawings)


@dataclass
class LabelledBitmaps:
    bitmaps: np.ndarray  # uint8 (N, size, size), white ink on black unless inverted
    labels: np.ndarray  # int64, index into class_names
    class_names: list[str]
    skipped: SkipLog = field(default_factory=SkipLog)  # bad lines passed over with on_error="skip"

    def __len__(self) -> int:
        return len(self.bitmaps)


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {on_error!r}")


def _labels(counts: Sequence[tuple[str, int]], class_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    return np.repeat(
        np.array([index[name] for name, _ in counts], dtype=np.int64),
        [n for _, n in counts],
    )


def load_drawings(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    fmt: str = "simplified",
    per_class: int | None = None,
    on_error: str = "raise",
    mirror: str | os.PathLike | None = None,
) -> LabelledDrawings:
    """Drawings of several categories / ndjson or Sketch-RNN ``.npz`` files with integer labels.

    Deterministic: the first ``per_class`` records of each class, in file order (over HTTP
    only those are downloaded: a head of each file, see :func:`sketchgen.data.sources.resolve`).
    ``fmt`` is ``"raw"``, ``"simplified"`` or ``"sketchrnn"`` for category names. An ``.npz``
    gives its stroke-3 sketches as drawings, splits in the order train, valid, test; when every
    source is such a file in Google's layout, ``splits`` says which drawing is in which (the
    mirror's files hold one split, ``sketches``: those are split again by seed like any other
    source).
    """
    check_format(fmt, (*STROKE_FORMATS, "sketchrnn"))
    _check_on_error(on_error)
    suffixes = (*NDJSON_SUFFIXES, ".npz")
    plan, names = _plan(source_list(sources), fmt, per_class, mirror, suffixes)
    skipped = SkipLog()

    read_splits: list[str | None] = []  # the split of each drawing the last read gave

    def read(path: Path, limit: int | None, log: SkipLog) -> list[Drawing]:
        if not path.name.endswith(".npz"):
            read_splits[:] = []
            return list(itertools.islice(read_ndjson(path, on_error, log), limit))
        tagged = [(key if key in GOOGLE_NPZ_SPLITS else None, sketch)
                  for key, sketches in read_sketch_npz(path).items() for sketch in sketches]
        read_splits[:] = [key for key, _ in tagged[:limit]]
        return [stroke3_to_drawing(sketch) for _, sketch in tagged[:limit]]

    drawings, counts, split_of = [], [], []
    for source, part in _take(plan, per_class, read, skipped, fmt, mirror):
        drawings.extend(part)
        counts.append((source.class_name, len(part)))
        split_of.extend(read_splits or [None] * len(part))
    splits = None
    if split_of and None not in split_of:
        splits = {key: np.flatnonzero(np.array(split_of) == key) for key in GOOGLE_NPZ_SPLITS}
    return LabelledDrawings(drawings, _labels(counts, names), names, skipped, splits)


def drawings_of(value: Any, name: str) -> list[Drawing]:
    """``value`` as a list of drawings: LabelledDrawings or a sequence of Drawing."""
    if isinstance(value, LabelledDrawings):
        return value.drawings
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(isinstance(item, Drawing) for item in value):
            return list(value)
    raise TypeError(f"{name}: expected LabelledDrawings or a sequence of Drawing, "
                    f"got {type(value).__name__}")


@cache
def _renderer_identity() -> str:
    """A hash of the rasterize package's code: a fix to the renderer invalidates cached bitmaps."""
    digest = hashlib.sha256()
    for module in sorted(Path(rasterize.__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    return digest.hexdigest()


def _bitmap_cache_path(path: Path, limit: int | None, on_error: str, settings: dict) -> Path:
    stat = path.stat()
    identity = {
        "file": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "limit": limit,
        "on_error": on_error,
        "render": settings,
        "renderer": _renderer_identity(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "bitmaps" / f"{key}.npz"


def _render_file(path: Path, limit: int | None, on_error: str, settings: dict) -> tuple:
    """Render the first ``limit`` drawings of an ndjson file in bounded batches."""
    log = SkipLog()
    drawings = itertools.islice(read_ndjson(path, on_error, log), limit)
    batches = []
    while batch := list(itertools.islice(drawings, RENDER_BATCH)):
        batches.append(render(batch, **settings))
    return np.concatenate(batches) if batches else render([], **settings), log


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as out:  # a file, not a name: np.savez would append ".npz" to one
        np.savez(out, **arrays)


def _cached_render(
    path: Path, limit: int | None, on_error: str, settings: dict, skipped: SkipLog
) -> np.ndarray:
    """Bitmaps of one ndjson file, rendered once and then read from the cache."""
    cached = _bitmap_cache_path(path, limit, on_error, settings)
    if cached.exists():
        with np.load(cached, allow_pickle=False) as stored:
            bitmaps, log = stored["bitmaps"], json.loads(str(stored["skipped"]))
    else:
        bitmaps, file_log = _render_file(path, limit, on_error, settings)
        log = {"counts": dict(file_log.counts), "examples": file_log.examples}
        atomic_write(cached, lambda tmp: _save_npz(tmp, bitmaps=bitmaps,
                                                  skipped=np.array(json.dumps(log))))
    _add_skips(skipped, log["counts"], log["examples"])
    return bitmaps


def _load_npy_bitmaps(path: Path, limit: int | None, size: int) -> np.ndarray:
    """The first ``limit`` rows of a ``uint8`` ``(N, size*size)`` or ``(N, size, size)`` .npy,
    memory-mapped so only those rows are read."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (*NPY_HEADER_ERRORS, OverflowError, EOFError) as error:
        # numpy's messages name no file; some span lines. OverflowError: a negative size.
        reason = " ".join(str(error).split())
        raise ValueError(f"{path}: not a valid .npy file of bitmaps ({reason})") from None
    if array.dtype != np.uint8 or array.shape[1:] not in ((size * size,), (size, size)):
        raise ValueError(
            f"{path}: holds {array.dtype} {array.shape[1:]} rows, expected uint8 bitmaps of "
            f"{size}x{size} (shape (N, {size * size}) as in Google's numpy_bitmap files)"
        )
    return np.array(array[:limit]).reshape(-1, size, size)


def load_bitmaps(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    size: int = GOOGLE_SIZE,
    per_class: int | None = None,
    fmt: str = "simplified",
    on_error: str = "raise",
    mirror: str | os.PathLike | None = None,
    line_width: float = GOOGLE_LINE_WIDTH,
    padding: float = GOOGLE_PADDING,
    invert: bool = False,
) -> LabelledBitmaps:
    """Labelled ``uint8`` bitmaps ``(N, size, size)`` of several categories / files.

    Stroke sources (``fmt`` ``"simplified"`` or ``"raw"``, or ndjson paths) are rendered with
    ``rasterize.render.render`` once and cached under the cache dir, keyed by the file
    (path, size, mtime), the render settings, the record limit and the renderer's code.
    ``fmt="bitmap"`` (and ``.npy`` paths) read ready-made bitmaps instead -- Google's
    ``numpy_bitmap`` files are 28 px at the default settings, so other settings are refused
    there rather than silently ignored. Same selection rule as :func:`load_drawings`.
    """
    check_format(fmt, (*STROKE_FORMATS, "bitmap"))
    _check_on_error(on_error)
    settings = {"size": size, "line_width": line_width, "padding": padding, "invert": invert}
    as_google = {"line_width": GOOGLE_LINE_WIDTH, "padding": GOOGLE_PADDING, "invert": False}
    accepts = (*NDJSON_SUFFIXES, ".npy") if fmt != "bitmap" else (".npy",)
    items = source_list(sources)
    uses_npy = any(_suffix_of(item, fmt) == ".npy" for item in items)
    if uses_npy and {k: settings[k] for k in as_google} != as_google:
        raise ValueError(
            ".npy bitmaps are used as they are: line_width, padding and invert apply only "
            "when rendering strokes (use fmt='simplified' or ndjson files)"
        )
    if fmt == "bitmap" and size != GOOGLE_SIZE:
        raise ValueError(
            f"Google's numpy_bitmap files are {GOOGLE_SIZE} px; for size={size} "
            "render strokes with fmt='simplified'"
        )
    render([], **settings)  # renders nothing, but rejects bad settings before any download
    plan, names = _plan(items, fmt, per_class, mirror, accepts)
    skipped = SkipLog()

    def read(path: Path, limit: int | None, log: SkipLog) -> np.ndarray:
        if path.name.endswith(".npy"):
            return _load_npy_bitmaps(path, limit, size)
        return _cached_render(path, limit, on_error, settings, log)

    parts, counts = [], []
    for source, part in _take(plan, per_class, read, skipped, fmt, mirror):
        parts.append(part)
        counts.append((source.class_name, len(part)))
    return LabelledBitmaps(
        np.concatenate(parts), _labels(counts, names), names, skipped
    )


# -- splits ---------------------------------------------------------------------------------


def split_indices(
    n: int, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, ...]:
    """Disjoint, sorted int64 index arrays covering ``range(n)``, one per fraction
    (train / valid / test by default); the same ``(n, seed, fractions)`` always gives the
    same split. Sizes are the rounded cumulative fractions, so they add up to ``n``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer (a split must be reproducible), got {seed!r}")
    weights = np.asarray(fractions, dtype=np.float64)
    if (
        weights.ndim != 1
        or not len(weights)
        or (weights < 0).any()
        or not np.isfinite(weights).all()
    ):
        raise ValueError(f"fractions must be non-negative numbers, got {fractions!r}")
    if abs(weights.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {weights.sum():g})")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(weights) * n).astype(np.int64)
    bounds[-1] = n
    return tuple(np.sort(part) for part in np.split(order, bounds[:-1]))


__all__ = [
    "LabelledBitmaps",
    "LabelledDrawings",
    "drawings_of",
    "load_bitmaps",
    "load_drawings",
    "split_indices",
]
