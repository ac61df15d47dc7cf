"""Render drawings to bitmaps with cairo, reproducing Google's ``numpy_bitmap`` files exactly.

Geometry (Google's ``vector_to_raster`` recipe, from the quickdraw-dataset notes): a drawing
lives in a 256x256 box; the canvas shows that box plus ``padding`` and half a line width on
every side, so user space is scaled by ``size / (256 + 2*padding + line_width)`` and shifted
by ``(2*padding + line_width) / 2``. Each drawing is centred by adding
``(256 - max(x), 256 - max(y)) / 2`` to its points. Every stroke is one path -- ``move_to``
its first point, then ``line_to`` every point *including the first* (so a one-point stroke
is a round dot) -- stroked on its own with round caps and joins and antialias BEST, white
on opaque black, on an ARGB32 surface whose blue byte is the grey level.

One exception, for speed: cairo's time to stroke one path grows faster than its points (one
stroke of 80k points took 0.7 s, of 320k 9.8 s), so a stroke of more than
:data:`MAX_PATH_POINTS` points (Google's longest in the mirror has 1,174) is stroked in
consecutive pieces of at most that many, each starting at the point where the previous one
ends. Rendering time is then linear in the points; such a stroke can differ from one stroked
whole at antialiased pixels where its pieces meet or overlap (each piece is composited on
its own).

:func:`render_reference` is that recipe as a plain per-point cairo loop (the documented
baseline in ``benchmarks/bench_render.py``). :func:`render` gives byte-identical pixels but
hands cairo each stroke as one prebuilt ``cairo_path_t`` built with numpy: one C call per
stroke instead of one Python call per point, on one reused surface.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import cairocffi
import numpy as np
from cairocffi import cairo as _cairo
from cairocffi import constants as _constants
from cairocffi import ffi as _ffi

from rasterize.drawings import Drawing
from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING, GOOGLE_SIZE, ORIGINAL_SIDE

CHANNELS = ("ink", "order", "time")
TIME_MIN_LEVEL = 0.25  # "time" grey level (x255) of the earliest ink: dim but still visible
_BLUE_BYTE = 0 if sys.byteorder == "little" else 3  # ARGB32 pixels are native-endian uint32
# Most points cairo strokes at once: 3.5x Google's longest stroke in the mirror, and where
# cairo's cost per point is still flat (one stroke of random segments: 41 us per point at
# 4,096 points, 68 us at 8,192).
MAX_PATH_POINTS = 4096


# -- input ---------------------------------------------------------------------------------


def off_grid(points: np.ndarray) -> np.ndarray:
    """Per point: is it not on Google's simplified grid (integers in 0..255)?"""
    return ((points < 0) | (points > 255) | (points != np.round(points))).any(axis=1)


def is_simplified(drawing: Drawing) -> bool:
    """True if every coordinate is an integer in 0..255, as in Google's simplified files."""
    return not off_grid(drawing.points()).any()


def normalise(drawing: Drawing) -> Drawing:
    """Simplified drawings as they are; any other through Google's first preprocessing step.

    That step (``rasterize.simplify.align_and_scale``) moves the drawing so its minimum x
    and y are 0 and scales it uniformly so its larger extent spans 0..255; it does not
    resample, simplify or round, and keeps every point.
    """
    if is_simplified(drawing):
        return drawing
    from rasterize.simplify import align_and_scale  # preprocessing lives with the simplifier

    return align_and_scale(drawing)


def _check_geometry(size: int, line_width: float, padding: float) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not (math.isfinite(line_width) and line_width > 0):
        raise ValueError(f"line_width must be finite and positive, got {line_width!r}")
    if not (math.isfinite(padding) and padding >= 0):
        raise ValueError(f"padding must be finite and non-negative, got {padding!r}")


def _check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    channels = (channels,) if isinstance(channels, str) else tuple(channels)
    unknown = [c for c in channels if c not in CHANNELS]
    if not channels or unknown:
        raise ValueError(f"channels must be a non-empty selection of {CHANNELS}, got {channels!r}")
    return channels


# -- shared geometry -----------------------------------------------------------------------


def _centre_offset(strokes: Sequence[np.ndarray]) -> np.ndarray:
    """Google's centring: half the gap between the drawing's max x / max y and 256."""
    bbox_max = np.max([stroke.max(axis=0) for stroke in strokes], axis=0)
    return (ORIGINAL_SIDE - bbox_max) / 2.0


def _new_context(
    surface: cairocffi.ImageSurface, size: int, line_width: float, padding: float
) -> cairocffi.Context:
    ctx = cairocffi.Context(surface)
    ctx.set_antialias(cairocffi.ANTIALIAS_BEST)
    ctx.set_line_cap(cairocffi.LINE_CAP_ROUND)
    ctx.set_line_join(cairocffi.LINE_JOIN_ROUND)
    ctx.set_line_width(line_width)
    total_padding = 2.0 * padding + line_width
    scale = size / (ORIGINAL_SIDE + total_padding)
    ctx.scale(scale, scale)
    ctx.translate(total_padding / 2.0, total_padding / 2.0)
    return ctx


def _blue(argb32: np.ndarray, size: int) -> np.ndarray:
    """The blue bytes of an ARGB32 surface's ``uint8`` rows (native-endian pixels)."""
    return argb32[:, : 4 * size].reshape(size, size, 4)[:, :, _BLUE_BYTE]


# -- the baseline --------------------------------------------------------------------------


def render_reference(
    drawings: Sequence[Drawing],
    size: int = GOOGLE_SIZE,
    line_width: float = GOOGLE_LINE_WIDTH,
    padding: float = GOOGLE_PADDING,
) -> np.ndarray:
    """Google's ``vector_to_raster``: one Python cairo call per point, one surface per batch.

    Takes simplified drawings (0..255, top-left aligned) and normalises nothing; returns
    ``uint8`` ``(N, size, size)``, white strokes on black.
    """
    _check_geometry(size, line_width, padding)
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, size, size)
    ctx = _new_context(surface, size, line_width, padding)
    stride = surface.get_stride()
    images = np.empty((len(drawings), size, size), dtype=np.uint8)
    for i, drawing in enumerate(drawings):
        ctx.set_source_rgb(0.0, 0.0, 0.0)
        ctx.paint()
        offset = _centre_offset(drawing.strokes)
        ctx.set_source_rgb(1.0, 1.0, 1.0)
        for stroke in drawing.strokes:
            centred = stroke + offset
            ctx.move_to(centred[0, 0], centred[0, 1])
            for x, y in centred:
                ctx.line_to(x, y)
            ctx.stroke()
        surface.flush()
        images[i] = _blue(np.frombuffer(surface.get_data(), np.uint8).reshape(size, stride), size)
    return images


# -- the fast path -------------------------------------------------------------------------

_CHUNK = 256  # drawings prepared at once: amortises numpy calls, bounds temporary memory


@dataclass(frozen=True)
class _Polylines:
    """Polylines of a batch of images, flat: what one channel asks cairo to stroke."""

    points: np.ndarray  # (P, 2) float64, centred user-space coordinates
    lengths: np.ndarray  # (S,) points per polyline
    levels: np.ndarray  # (S,) grey level 0..1 of each polyline
    per_image: np.ndarray  # (N,) polylines per image, in order


@dataclass(frozen=True)
class _Batch:
    """Normalised, centred drawings with their strokes concatenated."""

    points: np.ndarray  # (P, 2) float64
    stroke_lengths: np.ndarray  # (S,)
    strokes_per_drawing: np.ndarray  # (N,)
    times: np.ndarray | None  # (P,) milliseconds, when the channels need them


def _concatenated(drawings: Sequence[Drawing]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    strokes = [stroke for drawing in drawings for stroke in drawing.strokes]
    lengths = np.fromiter((len(s) for s in strokes), dtype=np.int64, count=len(strokes))
    per_drawing = np.fromiter((len(d.strokes) for d in drawings), np.int64, len(drawings))
    return np.concatenate(strokes), lengths, per_drawing


def _starts(counts: np.ndarray) -> np.ndarray:
    """Where each group of ``counts[i]`` items starts in their concatenation."""
    return np.cumsum(counts) - counts


def _ranks(counts: np.ndarray) -> np.ndarray:
    """Each item's index within its group: 0..c-1 for every group of c, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(_starts(counts), counts)


def _prepare(drawings: Sequence[Drawing], with_times: bool) -> _Batch:
    """Normalise what is not simplified, then centre every drawing the way Google does."""
    points, lengths, per_drawing = _concatenated(drawings)
    points_per_drawing = np.add.reduceat(lengths, _starts(per_drawing))
    first_point = _starts(points_per_drawing)
    raw = np.logical_or.reduceat(off_grid(points), first_point)
    if raw.any():
        drawings = [normalise(d) if r else d for d, r in zip(drawings, raw.tolist(), strict=True)]
        points = np.concatenate([stroke for drawing in drawings for stroke in drawing.strokes])
    offset = (ORIGINAL_SIDE - np.maximum.reduceat(points, first_point, axis=0)) / 2.0
    points = points + np.repeat(offset, points_per_drawing, axis=0)
    times = None
    if with_times:
        times = np.concatenate([t for drawing in drawings for t in drawing.times])
    return _Batch(points, lengths, per_drawing, times)


def _ink(batch: _Batch) -> _Polylines:
    levels = np.ones(len(batch.stroke_lengths))
    return _Polylines(batch.points, batch.stroke_lengths, levels, batch.strokes_per_drawing)


def _order(batch: _Batch) -> _Polylines:
    """Stroke k of K at grey (K - k) / K: the first stroke 255, the last 255 / K."""
    count = np.repeat(batch.strokes_per_drawing, batch.strokes_per_drawing)
    levels = (count - _ranks(batch.strokes_per_drawing)) / count
    return _Polylines(batch.points, batch.stroke_lengths, levels, batch.strokes_per_drawing)


def _time(batch: _Batch) -> _Polylines:
    """Every segment (a one-point stroke: its dot) at the normalised time of its end point.

    Grey = TIME_MIN_LEVEL + (1 - TIME_MIN_LEVEL) * (t - t_first) / (t_last - t_first), over
    each drawing's points (all at TIME_MIN_LEVEL if its times are all equal).
    """
    lengths = batch.stroke_lengths
    segments_per_stroke = np.maximum(lengths - 1, 1)
    segment_lengths = np.repeat(np.minimum(lengths, 2), segments_per_stroke)
    # a segment starts at every point but the last of its stroke (the only one of a dot)
    first = np.repeat(_starts(lengths), segments_per_stroke) + _ranks(segments_per_stroke)
    last = first + segment_lengths - 1
    source = np.repeat(first, segment_lengths) + _ranks(segment_lengths)
    stroke_drawing_starts = _starts(batch.strokes_per_drawing)
    points_per_drawing = np.add.reduceat(lengths, stroke_drawing_starts)
    first_point = _starts(points_per_drawing)
    t_first = np.repeat(np.minimum.reduceat(batch.times, first_point), points_per_drawing)
    t_last = np.repeat(np.maximum.reduceat(batch.times, first_point), points_per_drawing)
    span = t_last - t_first
    fraction = np.divide(batch.times - t_first, span, out=np.zeros_like(span), where=span > 0)[last]
    levels = TIME_MIN_LEVEL + (1.0 - TIME_MIN_LEVEL) * fraction
    segments_per_drawing = np.add.reduceat(segments_per_stroke, stroke_drawing_starts)
    return _Polylines(batch.points[source], segment_lengths, levels, segments_per_drawing)


_CHANNEL_PATHS = {"ink": _ink, "order": _order, "time": _time}


def _in_pieces(polylines: _Polylines, most: int = MAX_PATH_POINTS) -> _Polylines:
    """Polylines of more than ``most`` points as consecutive pieces of at most ``most``
    points, each starting at the last point of the one before, at the same grey level."""
    lengths = polylines.lengths
    if not len(lengths) or lengths.max() <= most:
        return polylines
    pieces = np.maximum(1, -(-(lengths - 1) // (most - 1)))  # ceil((n - 1) / (most - 1))
    rank = _ranks(pieces)
    first = np.repeat(_starts(lengths), pieces) + rank * (most - 1)
    piece_lengths = np.minimum(most, np.repeat(lengths, pieces) - rank * (most - 1))
    source = np.repeat(first, piece_lengths) + _ranks(piece_lengths)
    images = len(polylines.per_image)
    image_of = np.repeat(np.arange(images), polylines.per_image)
    per_image = np.bincount(image_of, weights=pieces, minlength=images).astype(np.int64)
    levels = np.repeat(polylines.levels, pieces)
    return _Polylines(polylines.points[source], piece_lengths, levels, per_image)


def _path_records(points: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, list, list]:
    """Polylines as ``cairo_path_data_t`` records (16 bytes each) in one float64 buffer.

    A polyline of n points takes 2(n+1) records: a MOVE_TO header and its point, then a
    LINE_TO header and point for every point -- the first one again, as the recipe does.
    Returns the ``(R, 2)`` buffer and each polyline's first record and record count.
    """
    slots = lengths + 1  # the move_to, then a line_to per point
    source = np.repeat(_starts(lengths), slots) + np.maximum(_ranks(slots) - 1, 0)
    first_slot = _starts(slots)
    records = np.zeros((2 * len(source), 2), dtype=np.float64)
    records[1::2] = points[source]
    headers = records.view(np.int32).reshape(len(records), 4)[0::2]
    headers[:, 0] = _constants.PATH_LINE_TO
    headers[:, 1] = 2  # records per element: its header and one point
    headers[first_slot, 0] = _constants.PATH_MOVE_TO
    return records, (2 * first_slot).tolist(), (2 * slots).tolist()


class _Canvas:
    """One reusable ARGB32 surface over a numpy buffer, with Google's transform set."""

    def __init__(self, size: int, line_width: float, padding: float):
        self.size = size
        self.pixels = np.zeros((size, 4 * size), dtype=np.uint8)  # ARGB32 stride is 4*size
        self.surface = cairocffi.ImageSurface(
            cairocffi.FORMAT_ARGB32,
            size,
            size,
            data=memoryview(self.pixels.reshape(-1)),
            stride=4 * size,
        )
        self.ctx = _new_context(self.surface, size, line_width, padding)
        self._cr = self.ctx._pointer  # cairocffi's handle of the cairo_t, for direct calls
        self._surface = self.surface._pointer
        self._path = _ffi.new("cairo_path_t *")

    def draw(self, polylines: _Polylines, out: np.ndarray) -> None:
        """Image i: its polylines each stroked on its own at its grey level, over black."""
        cr, path, blue = self._cr, self._path, _blue(self.pixels, self.size)
        polylines = _in_pieces(polylines)
        records, starts, counts = _path_records(polylines.points, polylines.lengths)
        data = _ffi.cast("cairo_path_data_t *", _ffi.from_buffer(records))
        levels = polylines.levels.tolist()
        first = 0
        for i, count in enumerate(polylines.per_image.tolist()):
            _cairo.cairo_set_source_rgb(cr, 0.0, 0.0, 0.0)
            _cairo.cairo_paint(cr)
            level = None
            for k in range(first, first + count):
                if levels[k] != level:
                    level = levels[k]
                    _cairo.cairo_set_source_rgb(cr, level, level, level)
                path.data, path.num_data = data + starts[k], counts[k]
                _cairo.cairo_append_path(cr, path)
                _cairo.cairo_stroke(cr)
            first += count
            _cairo.cairo_surface_flush(self._surface)
            out[i] = blue
        status = _cairo.cairo_status(cr)
        if status != _constants.STATUS_SUCCESS:
            reason = _ffi.string(_cairo.cairo_status_to_string(status)).decode()
            raise RuntimeError(f"cairo failed: {reason}")


def render(
    drawings: Sequence[Drawing],
    size: int = GOOGLE_SIZE,
    line_width: float = GOOGLE_LINE_WIDTH,
    padding: float = GOOGLE_PADDING,
    invert: bool = False,
    channels: Sequence[str] | None = None,
) -> np.ndarray:
    """Render drawings to ``uint8`` bitmaps in Google's ``numpy_bitmap`` geometry.

    Returns ``(N, size, size)``, white (255) ink on black (0) -- at the defaults byte for
    byte Google's 28 px bitmaps -- or black on white with ``invert=True``. ``line_width``
    and ``padding`` are in units of the 256 px drawing box, so the look is the same at any
    ``size``.

    Input: drawings whose coordinates are all integers in 0..255 (Google's simplified
    format) are used as they are. Any other drawing (raw data, float model samples) is
    first normalised with Google's first preprocessing step,
    ``rasterize.simplify.align_and_scale``: shifted so min x = min y = 0, then scaled
    uniformly so its larger extent is 255 -- not resampled, simplified or rounded.

    ``channels``, e.g. ``("ink", "order", "time")``, returns ``(N, C, size, size)``:

    * ``"ink"``: the plain bitmap above;
    * ``"order"``: stroke k of K drawn at grey 255 (K - k) / K -- the first stroke brightest,
      the last 255 / K; a later stroke covers an earlier one where they cross;
    * ``"time"``: each segment drawn at the normalised time of its end point,
      grey 255 (0.25 + 0.75 (t - t_first) / (t_last - t_first)), later segments on top;
      needs the drawing's raw timestamps (``Drawing.times``), else ``ValueError``.

    ``invert`` applies to every channel.
    """
    _check_geometry(size, line_width, padding)
    names = ("ink",) if channels is None else _check_channels(channels)
    if "time" in names:
        untimed = next((i for i, d in enumerate(drawings) if d.times is None), None)
        if untimed is not None:
            raise ValueError(f"drawing {untimed} has no timestamps: 'time' needs raw data")
    drawings = list(drawings)
    canvas = _Canvas(size, line_width, padding)
    images = np.empty((len(drawings), len(names), size, size), dtype=np.uint8)
    for begin in range(0, len(drawings), _CHUNK):
        batch = _prepare(drawings[begin : begin + _CHUNK], with_times="time" in names)
        for c, name in enumerate(names):
            canvas.draw(_CHANNEL_PATHS[name](batch), images[begin : begin + _CHUNK, c])
    if invert:
        np.subtract(255, images, out=images)
    return images[:, 0] if channels is None else images


__all__ = [
    "CHANNELS",
    "MAX_PATH_POINTS",
    "TIME_MIN_LEVEL",
    "is_simplified",
    "normalise",
    "off_grid",
    "render",
    "render_reference",
]
