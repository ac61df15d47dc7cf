"""Render drawings to bitmaps with cairo, reproducing Google's ``numpy_bitmap`` files exactly.

Geometry (Google's ``vector_to_raster`` recipe, from the quickdraw-dataset notes): a drawing
lives in a 256x256 box; the canvas shows that box plus ``padding`` and half a line width on
every side, so user space is scaled by ``size / (256 + 2*padding + line_width)`` and shifted
by ``(2*padding + line_width) / 2``. Each drawing is centred by adding
``(256 - max(x), 256 - max(y)) / 2`` to its points. Every stroke is one path -- ``move_to``
its first point, then ``line_to`` every point *including the first* (so a one-point stroke
is a round dot) -- stroked on its own with round caps and joins and antialias BEST, white
on opaque black, on an ARGB32 surface whose blue byte is the grey level.

:func:`render_reference` is that recipe as a plain per-point cairo loop (the documented
baseline in ``benchmarks/bench_render.py``). :func:`render` gives byte-identical pixels but
hands cairo each stroke as one prebuilt ``cairo_path_t`` built with numpy: one C call per
stroke instead of one Python call per point, on one reused surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cairocffi
import numpy as np
from cairocffi import cairo as _cairo
from cairocffi import constants as _constants
from cairocffi import ffi as _ffi

from rasterize.drawings import Drawing

ORIGINAL_SIDE = 256.0  # Google's simplified drawings live in 0..255
CHANNELS = ("ink", "order", "time")
TIME_MIN_LEVEL = 0.25  # "time" grey level (x255) of the earliest ink: dim but still visible


# -- input ---------------------------------------------------------------------------------


def is_simplified(drawing: Drawing) -> bool:
    """True if every coordinate is an integer in 0..255, as in Google's simplified files."""
    points = drawing.points()
    return bool(points.min() >= 0 and points.max() <= 255 and np.all(points == np.round(points)))


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


def _blue(pixels: np.ndarray) -> np.ndarray:
    """The blue byte of native-endian ARGB32 pixels (``uint32``), as ``uint8``."""
    return (pixels & 0xFF).astype(np.uint8)


# -- the baseline --------------------------------------------------------------------------


def render_reference(
    drawings: Sequence[Drawing],
    size: int = 28,
    line_width: float = 16.0,
    padding: float = 16.0,
) -> np.ndarray:
    """Google's ``vector_to_raster``: one Python cairo call per point, one surface per batch.

    Takes simplified drawings (0..255, top-left aligned) and normalises nothing; returns
    ``uint8`` ``(N, size, size)``, white strokes on black.
    """
    _check_geometry(size, line_width, padding)
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, size, size)
    ctx = _new_context(surface, size, line_width, padding)
    row_pixels = surface.get_stride() // 4
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
        pixels = np.frombuffer(surface.get_data(), dtype=np.uint32).reshape(size, row_pixels)
        images[i] = _blue(pixels[:, :size])
    return images


# -- the fast path -------------------------------------------------------------------------


def _path_records(polylines: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Polylines as ``cairo_path_data_t`` records (16 bytes each) in one float64 buffer.

    A polyline of n points takes 2(n+1) records: a MOVE_TO header and its point, then a
    LINE_TO header and point for every point -- the first one again, as the recipe does.
    Returns the ``(R, 2)`` buffer and each polyline's first record and record count.
    """
    lengths = np.fromiter((len(p) for p in polylines), dtype=np.int64, count=len(polylines))
    points = np.concatenate(polylines)
    first_point = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(len(polylines)), lengths + 1)
    first_slot = first_point + np.arange(len(polylines))  # +1 slot per polyline: the move_to
    position = np.arange(len(owner)) - first_slot[owner]
    source = first_point[owner] + np.maximum(position - 1, 0)
    records = np.zeros((2 * len(owner), 2), dtype=np.float64)
    records[1::2] = points[source]
    headers = records.view(np.int32).reshape(len(records), 4)[0::2]
    headers[:, 0] = _constants.PATH_LINE_TO
    headers[:, 1] = 2  # records per element: its header and one point
    headers[first_slot, 0] = _constants.PATH_MOVE_TO
    return records, 2 * first_slot, 2 * (lengths + 1)


class _Canvas:
    """One reusable ARGB32 surface over a numpy buffer, with Google's transform set."""

    def __init__(self, size: int, line_width: float, padding: float):
        self.pixels = np.zeros((size, size), dtype=np.uint32)  # ARGB32 stride is 4*size
        self.surface = cairocffi.ImageSurface(
            cairocffi.FORMAT_ARGB32,
            size,
            size,
            data=memoryview(self.pixels.reshape(-1).view(np.uint8)),
            stride=4 * size,
        )
        self.ctx = _new_context(self.surface, size, line_width, padding)
        self._cr = self.ctx._pointer  # cairocffi's handle of the cairo_t, for direct calls
        self._path = _ffi.new("cairo_path_t *")

    def draw(self, polylines: Sequence[np.ndarray], levels: np.ndarray) -> np.ndarray:
        """Stroke each polyline on its own, grey ``levels[i]`` (0..1), over black; blue bytes."""
        cr, path = self._cr, self._path
        _cairo.cairo_set_source_rgb(cr, 0.0, 0.0, 0.0)
        _cairo.cairo_paint(cr)
        records, starts, counts = _path_records(polylines)
        data = _ffi.cast("cairo_path_data_t *", _ffi.from_buffer(records))
        current_level = None
        for start, count, level in zip(
            starts.tolist(), counts.tolist(), levels.tolist(), strict=True
        ):
            if level != current_level:
                _cairo.cairo_set_source_rgb(cr, level, level, level)
                current_level = level
            path.data, path.num_data = data + start, count
            _cairo.cairo_append_path(cr, path)
            _cairo.cairo_stroke(cr)
        _cairo.cairo_surface_flush(self.surface._pointer)
        status = _cairo.cairo_status(cr)
        if status != _constants.STATUS_SUCCESS:
            raise RuntimeError(
                f"cairo failed: {_ffi.string(_cairo.cairo_status_to_string(status))}"
            )
        return _blue(self.pixels)


def _ink(strokes: Sequence[np.ndarray], _times) -> tuple[Sequence[np.ndarray], np.ndarray]:
    return strokes, np.ones(len(strokes))


def _order(strokes: Sequence[np.ndarray], _times) -> tuple[Sequence[np.ndarray], np.ndarray]:
    """Stroke k of K at grey (K - k) / K: the first stroke 255, the last 255 / K."""
    count = len(strokes)
    return strokes, (count - np.arange(count)) / count


def _time(strokes: Sequence[np.ndarray], times) -> tuple[Sequence[np.ndarray], np.ndarray]:
    """Every segment (a one-point stroke: its dot) at the normalised time of its end point.

    Grey = TIME_MIN_LEVEL + (1 - TIME_MIN_LEVEL) * (t - t_first) / (t_last - t_first), over
    the drawing's points (all at TIME_MIN_LEVEL if every time is equal).
    """
    all_times = np.concatenate(times)
    span = all_times.max() - all_times.min()
    segments, ends = [], []
    for stroke, stroke_times in zip(strokes, times, strict=True):
        if len(stroke) == 1:
            segments.append(stroke)
            ends.append(stroke_times[0])
            continue
        segments.extend(np.stack([stroke[:-1], stroke[1:]], axis=1))
        ends.extend(stroke_times[1:])
    fraction = (np.asarray(ends) - all_times.min()) / span if span > 0 else np.zeros(len(ends))
    return segments, TIME_MIN_LEVEL + (1.0 - TIME_MIN_LEVEL) * fraction


_CHANNEL_PATHS = {"ink": _ink, "order": _order, "time": _time}


def render(
    drawings: Sequence[Drawing],
    size: int = 28,
    line_width: float = 16.0,
    padding: float = 16.0,
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
    canvas = _Canvas(size, line_width, padding)
    images = np.empty((len(drawings), len(names), size, size), dtype=np.uint8)
    for i, drawing in enumerate(drawings):
        if "time" in names and drawing.times is None:
            raise ValueError(f"drawing {i} has no timestamps: the 'time' channel needs raw data")
        strokes = normalise(drawing).strokes
        offset = _centre_offset(strokes)
        centred = [stroke + offset for stroke in strokes]
        for c, name in enumerate(names):
            images[i, c] = canvas.draw(*_CHANNEL_PATHS[name](centred, drawing.times))
    if invert:
        np.subtract(255, images, out=images)
    return images[:, 0] if channels is None else images


__all__ = [
    "CHANNELS",
    "ORIGINAL_SIDE",
    "TIME_MIN_LEVEL",
    "is_simplified",
    "normalise",
    "render",
    "render_reference",
]
