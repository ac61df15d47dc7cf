"""The Quick, Draw! drawing record (:class:`Drawing`), the limits of one, and its ndjson writer.

Google publishes two stroke formats (https://github.com/googlecreativelab/quickdraw-dataset):

* raw: ``drawing = [[[x...], [y...], [t...]], ...]`` -- float coordinates of any range,
  ``t`` in milliseconds since the first point;
* simplified: ``drawing = [[[x...], [y...]], ...]`` -- integers in 0..255, aligned to the
  top-left corner, resampled and RDP-simplified (see ``rasterize.simplify``).

A :class:`Drawing` holds either, with Google's metadata keys (``word``, ``countrycode``,
``timestamp``, ``recognized``, ``key_id``) when present; :func:`write_ndjson` writes drawings
in Google's record layout. The checked, streaming reader of these files is
``rasterize.ndjson_reader``; no reader takes a drawing of more than
:data:`MAX_POINTS_PER_DRAWING` points or :data:`MAX_STROKES_PER_DRAWING` strokes.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

# The most a drawing may hold; a line over either is a bad line. Far above Google's data (the
# mirror's largest of 79,791 drawings: 1,174 points, raw cello:12; 366 strokes, simplified
# banana:57), low enough that no one line holds a worker for long (3 s to render 100,000
# points of random segments, the slowest shape measured) or takes much memory. Sketch-RNN
# .npz sketches are held to the same limits (rasterize.sketch_npz).
MAX_POINTS_PER_DRAWING = 100_000
MAX_STROKES_PER_DRAWING = 10_000
# Google's metadata keys, in the order of Google's records (``Drawing.to_json`` keeps it)
METADATA_KEYS = ("word", "countrycode", "timestamp", "recognized", "key_id")


@dataclass(frozen=True, eq=False)
class Drawing:
    """One drawing: its strokes as float64 ``(n, 2)`` arrays of ``(x, y)``, and metadata.

    ``times`` holds one ``(n,)`` float64 array per stroke (milliseconds) for raw drawings
    that carry them, else ``None``.
    """

    strokes: tuple[np.ndarray, ...]
    times: tuple[np.ndarray, ...] | None = None
    word: str | None = None
    countrycode: str | None = None
    timestamp: str | None = None
    recognized: bool | None = None
    key_id: str | None = None

    @property
    def num_points(self) -> int:
        return sum(len(s) for s in self.strokes)

    def points(self) -> np.ndarray:
        """All points of all strokes, ``(num_points, 2)``."""
        return np.concatenate(self.strokes)

    def metadata(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in METADATA_KEYS if getattr(self, k) is not None}

    def to_json(self) -> dict[str, Any]:
        """Google's record layout: metadata keys in Google's order, then ``drawing``."""
        strokes = []
        for i, stroke in enumerate(self.strokes):
            coords = [_json_numbers(stroke[:, 0]), _json_numbers(stroke[:, 1])]
            if self.times is not None:
                coords.append(_json_numbers(self.times[i]))
            strokes.append(coords)
        return {**self.metadata(), "drawing": strokes}


def _json_numbers(values: np.ndarray) -> list[int | float]:
    """Whole numbers are written as integers, others as floats, value by value -- as Google's
    files do (JavaScript numbers: a raw stroke mixes ``129`` and ``128.679...``), so
    rewriting a Google file reproduces it byte for byte."""
    whole = (values == np.round(values)) & (np.abs(values) < 2**53)
    if whole.all():  # simplified files: one vectorised conversion
        return values.astype(np.int64).tolist()
    return [int(v) if w else v for v, w in zip(values.tolist(), whole.tolist(), strict=True)]


def write_ndjson(drawings: Iterable[Drawing], path: str | os.PathLike) -> int:
    """Write drawings one per line (``.gz`` compresses), atomically; returns the count."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with gzip.open(tmp, "wb") if path.suffix == ".gz" else open(tmp, "wb") as out:
            for drawing in drawings:
                out.write(orjson.dumps(drawing.to_json()) + b"\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def drawing_from_arrays(
    strokes: Iterable[np.ndarray], word: str | None = None, **metadata: Any
) -> Drawing:
    """Build a drawing from ``(n, 2)`` stroke arrays of ``(x, y)`` rows (for generated samples)."""
    arrays = tuple(np.asarray(s, dtype=np.float64) for s in strokes)
    # No reshape: Google's [[x...], [y...]] layout would silently turn into wrong points.
    if any(a.ndim != 2 or a.shape[1] != 2 for a in arrays):
        shapes = [a.shape for a in arrays if a.ndim != 2 or a.shape[1] != 2]
        raise ValueError(f"strokes must be (n, 2) arrays of (x, y) rows, got shapes {shapes}")
    if not arrays or any(len(s) == 0 for s in arrays):
        raise ValueError("a drawing needs at least one stroke and no empty strokes")
    if not all(np.isfinite(s).all() for s in arrays):
        raise ValueError("stroke coordinates must be finite")
    return Drawing(arrays, None, word=word, **metadata)


__all__ = [
    "MAX_POINTS_PER_DRAWING",
    "MAX_STROKES_PER_DRAWING",
    "METADATA_KEYS",
    "Drawing",
    "drawing_from_arrays",
    "write_ndjson",
]
