"""Stroke-3 and stroke-5 sequences: the conventions, the conversions, offset normalisation.

This module is THE place the sequence conventions of the suite are written down; every other
module (the Sketch-RNN model, its data batching, sampling) follows them.

Drawing
    :class:`rasterize.drawings.Drawing`: absolute ``(x, y)`` points per stroke, y pointing
    down (image coordinates), as in Google's ndjson files.

stroke-3 (the convention of Google's Sketch-RNN ``.npz`` files), float ``(n, 3)``:
    ``[dx, dy, pen_lifted]``, one row per point after the first. The FIRST POINT IS THE
    ORIGIN: it has no row, and row ``i`` is the offset from point ``i`` to point ``i + 1``
    (so no sketch starts with a jump from ``(0, 0)`` to where it was drawn, which would
    dominate the first prediction and inflate the normalising std). ``pen_lifted = 1`` on
    the row of the LAST point of every stroke (the pen leaves the paper after it), so the
    last row of a sketch always has ``pen_lifted = 1``. A drawing whose first stroke is a
    single point starts with the row ``(0, 0, 1)`` (that point again, lifted): the same
    picture, and a one-point drawing is still a non-empty sketch. Drawing -> stroke-3 ->
    Drawing gives back every point given the first one (``stroke3_to_drawing(..., start=)``);
    without it the drawing starts at ``(0, 0)``, and samples are re-aligned to 0..255 before
    rendering anyway (:func:`stroke3_to_canvas`). magenta's ``utils.lines_to_strokes`` keeps
    the first point's absolute position as its first row; its training data, the ``.npz``
    files, do not, and those are what we match.

stroke-5 (Ha & Eck 2018, section 3.1), float32 ``(1 + length, 5)``:
    ``[dx, dy, p_down, p_up, p_end]``. Row 0 is the start token ``S0 = (0, 0, 1, 0, 0)``.
    Rows ``1..n`` are the points: ``p_down = 1 - pen_lifted``, ``p_up = pen_lifted``.
    End of sketch is marked AFTER the last point: rows ``n+1..length`` are the padding row
    ``(0, 0, 0, 0, 1)``; the last point itself keeps its ``p_up = 1``. ``length >= n + 1``,
    so every sketch has at least one end row, including the longest one of a data set (magenta
    pads to exactly the longest length, leaving the longest sketches with no end row; we pad
    one further so the model always sees where sketches stop). A decoder reads rows
    ``[:-1]`` as inputs and predicts rows ``[1:]``.

Normalisation (magenta's ``calculate_normalizing_scale_factor``, :func:`normalize_splits`)
    Sketches with more than ``max_seq_len`` points are dropped from every split (counted),
    offsets are clamped to ``+-offset_limit`` (magenta's removal of huge gaps), and ``dx, dy``
    of every split are divided by ONE factor: the standard deviation (ddof 0) of all ``dx``
    and ``dy`` values of the kept training sketches, pooled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rasterize.drawings import Drawing
from rasterize.simplify import align_and_scale

START_TOKEN = np.array([0, 0, 1, 0, 0], dtype=np.float32)  # S0: "pen down at the origin"
END_ROW = np.array([0, 0, 0, 0, 1], dtype=np.float32)  # padding after the last point


# -- Drawing <-> stroke-3 ----------------------------------------------------------------------


def drawing_to_stroke3(drawing: Drawing) -> np.ndarray:
    """A drawing as stroke-3 (float64), its first point the origin (see module doc)."""
    points = drawing.points()
    stroke3 = np.zeros((len(points), 3), dtype=np.float64)
    stroke3[1:, :2] = np.diff(points, axis=0)
    stroke3[np.cumsum([len(s) for s in drawing.strokes]) - 1, 2] = 1.0
    # row 0, (0, 0, lift of the first point), says something only after a lone first point
    return stroke3 if len(drawing.strokes[0]) == 1 else stroke3[1:]


def stroke3_to_drawing(stroke3: np.ndarray, start: Sequence[float] = (0.0, 0.0),
                       **metadata) -> Drawing:
    """The drawing a stroke-3 sequence describes: absolute points from the first point
    ``start``, split after pen lifts.

    A last point without a pen lift (a sample cut at its length cap) still ends its stroke.
    """
    stroke3 = np.asarray(stroke3, dtype=np.float64)
    if stroke3.ndim != 2 or stroke3.shape[1] != 3 or len(stroke3) == 0:
        raise ValueError(f"stroke-3 must be a non-empty (n, 3) array, got shape {stroke3.shape}")
    if not np.isfinite(stroke3).all():
        raise ValueError("stroke-3 offsets must be finite")
    first = np.asarray(start, dtype=np.float64).reshape(1, 2)
    points = np.cumsum(np.concatenate([first, stroke3[:, :2]]), axis=0)
    ends = np.flatnonzero(stroke3[:-1, 2] > 0.5) + 2  # row i is point i + 1
    return Drawing(tuple(np.split(points, ends)), None, **metadata)


def stroke3_to_canvas(stroke3: np.ndarray, **metadata) -> Drawing:
    """The drawing of a stroke-3 sequence in any units, aligned and scaled into Google's 0..255
    simplified box (``rasterize.simplify.align_and_scale``), ready for ``rasterize.render``."""
    return align_and_scale(stroke3_to_drawing(stroke3, **metadata))


# -- stroke-3 <-> stroke-5 ---------------------------------------------------------------------


def stroke3_to_stroke5(stroke3: np.ndarray, length: int | None = None) -> np.ndarray:
    """Stroke-5 with the start token, padded with end rows to ``1 + length`` rows.

    ``length`` defaults to ``n + 1`` (one end row) and must be at least that.
    """
    n = len(stroke3)
    length = n + 1 if length is None else length
    if length < n + 1:
        raise ValueError(f"length {length} leaves no end row after {n} points (need >= {n + 1})")
    stroke5 = np.zeros((1 + length, 5), dtype=np.float32)
    stroke5[0] = START_TOKEN
    stroke5[1 : n + 1, :2] = stroke3[:, :2]
    stroke5[1 : n + 1, 3] = stroke3[:, 2]
    stroke5[1 : n + 1, 2] = 1.0 - stroke5[1 : n + 1, 3]
    stroke5[n + 1 :] = END_ROW
    return stroke5


def stroke5_to_stroke3(stroke5: np.ndarray) -> np.ndarray:
    """The points of a stroke-5 sequence (row 0 must be the start token) up to the first end
    row, as float64 stroke-3. Pen states are read as the argmax of the three pen columns, so
    soft or one-hot rows both work."""
    stroke5 = np.asarray(stroke5)
    if stroke5.ndim != 2 or stroke5.shape[1] != 5 or len(stroke5) == 0:
        raise ValueError(f"stroke-5 must be a (rows, 5) array, got shape {stroke5.shape}")
    if not np.array_equal(stroke5[0], START_TOKEN):
        raise ValueError(f"row 0 of a stroke-5 sequence must be the start token, got {stroke5[0]}")
    pen = np.argmax(stroke5[1:, 2:], axis=1)
    ended = np.flatnonzero(pen == 2)
    n = int(ended[0]) if len(ended) else len(pen)
    stroke3 = np.empty((n, 3), dtype=np.float64)
    stroke3[:, :2] = stroke5[1 : n + 1, :2]
    stroke3[:, 2] = pen[:n] == 1
    return stroke3


# -- normalisation -----------------------------------------------------------------------------


def normalizing_scale_factor(sketches: Sequence[np.ndarray]) -> float:
    """Standard deviation (ddof 0) of all ``dx`` and ``dy`` values of ``sketches``, pooled."""
    if not sketches:
        raise ValueError("cannot compute a scale factor from no sketches")
    offsets = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2].ravel() for s in sketches])
    scale = float(np.std(offsets))
    if not scale > 0:
        raise ValueError("all offsets are equal: no scale to normalise by")
    return scale


@dataclass(frozen=True)
class NormalizedSplits:
    """Sketches ready for Sketch-RNN: float32 stroke-3, offsets divided by ``scale_factor``."""

    splits: dict[str, list[np.ndarray]]
    kept: dict[str, np.ndarray]  # int64 positions, in the input split, of the sketches kept
    scale_factor: float  # std of the training offsets; multiply samples by it to get data units
    dropped: dict[str, int]  # sketches over max_seq_len removed from each split
    max_seq_len: int  # the cap the splits were filtered with


def normalize_splits(
    splits: Mapping[str, Sequence[np.ndarray]],
    max_seq_len: int = 250,
    train_key: str = "train",
    offset_limit: float = 1000.0,
) -> NormalizedSplits:
    """Drop sketches over ``max_seq_len`` points, clamp offsets to ``+-offset_limit`` and divide
    every split by the training split's :func:`normalizing_scale_factor` (see module doc)."""
    if train_key not in splits:
        raise ValueError(f"no {train_key!r} split among {sorted(splits)}")
    normalised, kept, dropped = {}, {}, {}
    for key, sketches in splits.items():
        kept[key] = np.flatnonzero([len(s) <= max_seq_len for s in sketches]).astype(np.int64)
        dropped[key] = len(sketches) - len(kept[key])
        normalised[key] = [_clamped(sketches[i], offset_limit) for i in kept[key]]
    scale = normalizing_scale_factor(normalised[train_key])
    for sketches in normalised.values():
        for sketch in sketches:
            sketch[:, :2] /= scale
    return NormalizedSplits(normalised, kept, scale, dropped, max_seq_len)


def _clamped(sketch: np.ndarray, limit: float) -> np.ndarray:
    out = np.array(sketch, dtype=np.float32)
    np.clip(out[:, :2], -limit, limit, out=out[:, :2])
    return out


__all__ = [
    "END_ROW",
    "START_TOKEN",
    "NormalizedSplits",
    "drawing_to_stroke3",
    "normalize_splits",
    "normalizing_scale_factor",
    "stroke3_to_canvas",
    "stroke3_to_drawing",
    "stroke3_to_stroke5",
    "stroke5_to_stroke3",
]
