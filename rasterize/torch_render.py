"""A batched torch renderer with the geometry of Google's cairo recipe (CPU or CUDA).

For on-the-fly rasterising in training and for model samples that already live on the GPU.
Geometry is :mod:`rasterize.render`'s (Google's ``vector_to_raster``): the 256-unit drawing
frame is scaled by ``size / (256 + 2*padding + line_width)`` after a shift of
``(2*padding + line_width) / 2``, each drawing is centred by ``(256 - max x, 256 - max y) / 2``,
and every stroke is stroked with round caps and joins; a stroke's first point is also a
zero-length segment, so a one-point stroke is a round dot, as in the recipe.

How a pixel is shaded (no cairo, only tensor arithmetic):

* Each stroke is sampled on a ``supersample x supersample`` grid of sub-pixels. A sub-pixel's
  coverage is ``clamp(half_width - distance + 0.5, 0, 1)`` (in sub-pixels, distance to the
  nearest segment of the stroke): the box-filtered coverage of an axis-aligned edge.
* A pixel's coverage by one stroke is the mean over its sub-pixels. Taking the nearest
  segment per sub-pixel, not per pixel, is what unions the overlapping segments of a dense
  scribble the way cairo's fill of the stroke outline does.
* Strokes are composited like cairo's OVER, one stroke at a time:
  ``ink = 1 - prod(1 - stroke coverage)``, so a stroke drawn twice is darker, as in cairo.

Accuracy, as the mean absolute difference from Google's 450 real 28 px bitmaps in the
mirror (``tests/test_torch_render.py``): 1.36 grey levels with ``supersample=1``, 0.51 with
2 (the default), 0.35 with 3; each step costs about ``supersample**2`` in work. At 64 px
the default is 0.20 from cairo. :func:`coverage` is differentiable in the points.

Work grows with the ink, not with pixels x segments: segments are cut into pieces of at
most ``piece_reaches`` reaches, each piece touches only a fixed window of sub-pixels, and
coverages are maxed (``scatter_reduce``) into a small box canvas per stroke. Strokes are
processed in groups of at most ``max_chunk_elements`` work elements, so memory stays bounded
however many drawings a batch holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rasterize.drawings import Drawing
from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING, GOOGLE_SIZE, ORIGINAL_SIDE


@dataclass(frozen=True)
class TorchRenderConfig:
    """Geometry (the same arguments as ``rasterize.render.render``) and tuning knobs."""

    size: int = GOOGLE_SIZE  # output side in pixels; 28 is Google's numpy_bitmap
    line_width: float = GOOGLE_LINE_WIDTH  # in the 256-unit drawing frame (line_diameter)
    padding: float = GOOGLE_PADDING  # in the 256-unit drawing frame, on every side
    invert: bool = False  # black strokes on white instead of white on black
    supersample: int = 2  # sub-pixels per pixel side (accuracy vs speed: see module notes)
    piece_reaches: float = 2.0  # piece length in reaches; about 2 does the least work per ink
    max_chunk_elements: int = 1 << 17  # work-tensor elements per chunk: stays in cache

    def __post_init__(self) -> None:
        if self.size < 1 or self.supersample < 1:
            raise ValueError("size and supersample must be positive integers")
        if not (self.line_width > 0 and self.padding >= 0 and self.piece_reaches > 0):
            raise ValueError("line_width and piece_reaches must be > 0 and padding >= 0")


@dataclass(frozen=True)
class PolylineBatch:
    """A padded batch of drawings as polylines, in Google's 0..255 drawing frame.

    ``points[b, :n_b]`` are drawing ``b``'s points, stroke after stroke; ``pen_up`` marks the
    last point of every stroke (no segment joins it to the next point); ``mask`` marks real
    points and must be a prefix in every row (padding only at the end).
    """

    points: torch.Tensor  # (B, P, 2) float, x and y
    pen_up: torch.Tensor  # (B, P) bool, True on the last point of a stroke
    mask: torch.Tensor  # (B, P) bool, True on real points

    def __post_init__(self) -> None:
        b, p = self.mask.shape
        if self.points.shape != (b, p, 2) or self.pen_up.shape != (b, p):
            raise ValueError(
                f"points {tuple(self.points.shape)}, pen_up {tuple(self.pen_up.shape)} and "
                f"mask {tuple(self.mask.shape)} must be (B, P, 2), (B, P) and (B, P)"
            )

    @classmethod
    def from_drawings(
        cls, drawings: Sequence[Drawing], device: torch.device | str | None = None
    ) -> PolylineBatch:
        """Pad :class:`Drawing` records, normalised exactly as ``rasterize.render`` does."""
        from rasterize.render import normalise, off_grid  # the one rule for the simplified grid

        strokes = [stroke for drawing in drawings for stroke in drawing.strokes]
        points = np.concatenate(strokes) if strokes else np.zeros((0, 2))
        stroke_ends = np.cumsum(np.fromiter(map(len, strokes), np.int64, len(strokes)))
        per_drawing = np.fromiter((len(d.strokes) for d in drawings), np.int64, len(drawings))
        lengths = np.diff(np.append(0, stroke_ends)[np.cumsum(per_drawing)], prepend=0)
        row = np.repeat(np.arange(len(drawings)), lengths)
        column = np.arange(len(points)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        raw = np.bincount(row, weights=off_grid(points), minlength=len(drawings)) > 0
        if raw.any():
            fixed = [normalise(d) if r else d for d, r in zip(drawings, raw.tolist(), strict=True)]
            points = np.concatenate([stroke for drawing in fixed for stroke in drawing.strokes])
        longest = int(lengths.max(initial=0))
        padded = np.zeros((len(drawings), longest, 2), dtype=np.float32)
        padded[row, column] = points
        pen_up = np.zeros((len(drawings), longest), dtype=bool)
        pen_up[row[stroke_ends - 1], column[stroke_ends - 1]] = True
        mask = np.arange(longest) < lengths[:, None]
        return cls(*(torch.from_numpy(a).to(device) for a in (padded, pen_up, mask)))

    @classmethod
    def from_stroke3(
        cls, strokes: torch.Tensor, lengths: torch.Tensor | None = None, normalise: bool = True,
        start: torch.Tensor | None = None,
    ) -> PolylineBatch:
        """Stroke-3 ``(B, T, 3)``, rows ``(dx, dy, pen_lifted)`` (``rasterize.strokes``).

        ``lengths`` (B,) counts each sketch's real rows (all rows when ``None``). Points are
        the first point, ``start`` (B, 2; default the origin), then the cumulative sums of
        the offsets from it. ``normalise`` aligns every sketch to the top-left
        corner and scales it uniformly so its larger extent is 255, as
        ``rasterize.strokes.stroke3_to_canvas`` does, so offsets in any units (e.g. magenta's
        std-normalised ones) render like the data; without it, points must already be in
        Google's 0..255 frame.
        """
        batch, steps, _ = strokes.shape
        first = strokes.new_zeros(batch, 1, 3)  # the first point, pen down
        if start is not None:
            first[:, 0, :2] = start.to(strokes)
        strokes = torch.cat([first, strokes], dim=1)
        real = torch.full((batch,), steps) if lengths is None else lengths
        mask = torch.arange(steps + 1, device=strokes.device) <= real.to(strokes.device)[:, None]
        points = torch.cumsum(strokes[..., :2] * mask[..., None], dim=1)
        if normalise:
            points = _align_and_scale(points, mask)
        return cls(points, strokes[..., 2] > 0.5, mask)

    @classmethod
    def from_stroke5(cls, strokes: torch.Tensor, normalise: bool = True) -> PolylineBatch:
        """Stroke-5 ``(B, 1 + T, 5)`` as in ``rasterize.strokes``: row 0 the start token.

        Rows are ``(dx, dy, p_down, p_up, p_end)``; a row's pen state is the largest of the
        three (one-hot data or a model's probabilities), and the first ``p_end`` row and
        every row after it are padding, as in ``rasterize.strokes.stroke5_to_stroke3``.
        """
        from rasterize.strokes import START_TOKEN

        start = torch.as_tensor(START_TOKEN, dtype=strokes.dtype, device=strokes.device)
        if strokes.shape[1] == 0 or not bool((strokes[:, 0] == start).all()):
            raise ValueError(f"row 0 of every stroke-5 sketch must be the start token {start}")
        points = strokes[:, 1:]
        state = points[..., 2:5].argmax(dim=-1)
        lengths = (torch.cumsum(state == 2, dim=1) == 0).sum(dim=1)
        lifted = (state == 1)[..., None].to(points.dtype)
        return cls.from_stroke3(torch.cat([points[..., :2], lifted], -1), lengths, normalise)


def _align_and_scale(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per drawing: minimum x and y to 0, then the larger extent to 255 (if there is one)."""
    valid = mask[..., None]
    low = torch.where(valid, points, torch.inf).amin(dim=1, keepdim=True)
    high = torch.where(valid, points, -torch.inf).amax(dim=1, keepdim=True)
    extent = (high - low).amax(dim=2, keepdim=True)
    scale = torch.where(extent > 0, (ORIGINAL_SIDE - 1.0) / extent.clamp_min(1e-30), 1.0)
    return torch.where(valid, (points - low) * scale, 0.0)


@dataclass(frozen=True)
class _Geometry:
    """The config in sub-pixel units."""

    sub: int  # sub-pixels per pixel side
    side: int  # canvas side in sub-pixels
    scale: float  # sub-pixels per drawing unit
    reach: float  # half the line width + 0.5: coverage is 0 from this distance on
    piece_length: float  # longest segment piece
    window: int  # side of the square of sub-pixels that one piece can touch

    @classmethod
    def of(cls, config: TorchRenderConfig) -> _Geometry:
        sub = config.supersample
        side = config.size * sub
        scale = side / (ORIGINAL_SIDE + 2.0 * config.padding + config.line_width)
        reach = config.line_width * scale / 2.0 + 0.5
        piece_length = config.piece_reaches * reach
        # Sub-pixel centres within ``reach`` of a piece no longer than piece_length per axis.
        window = min(math.floor(piece_length + 2.0 * reach) + 1, side)
        return cls(sub, side, scale, reach, piece_length, window)


@dataclass(frozen=True)
class _Pieces:
    """Every segment piece of a batch, flat, in sub-pixel coordinates, grouped by stroke."""

    start: torch.Tensor  # (N, 2) float
    step: torch.Tensor  # (N, 2) float, end - start
    stroke: torch.Tensor  # (N,) int64, global stroke index; strokes are grouped by drawing
    stroke_drawing: torch.Tensor  # (S,) int64, the drawing of every stroke


def _pieces(batch: PolylineBatch, config: TorchRenderConfig, geometry: _Geometry) -> _Pieces:
    """Google's centring and scaling, one segment per point, segments cut into pieces."""
    points, mask = batch.points.float(), batch.mask
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("mask must be a prefix in every row: padding only after the points")
    if not bool(torch.isfinite(points[mask]).all()):
        raise ValueError("points must be finite")
    high = torch.where(mask[..., None], points, -torch.inf).amax(dim=1, keepdim=True)
    shift = (ORIGINAL_SIDE - high) / 2.0 + (2.0 * config.padding + config.line_width) / 2.0
    device_points = (points + shift) * geometry.scale
    # A stroke starts at the first point or right after a lifted pen; its first segment is
    # that point to itself (the recipe's line_to of the first point: a dot for 1-point strokes).
    starts = torch.ones_like(mask)
    starts[:, 1:] = batch.pen_up[:, :-1]
    previous = torch.roll(device_points, shifts=1, dims=1)
    seg_start = torch.where(starts[..., None], device_points, previous)[mask]
    seg_step = device_points[mask] - seg_start
    seg_stroke = torch.cumsum(starts[mask].long(), dim=0) - 1
    drawings = torch.arange(mask.shape[0], device=mask.device)
    stroke_drawing = drawings[:, None].expand_as(mask)[mask & starts]

    length = torch.linalg.vector_norm(seg_step, dim=1)
    count = torch.ceil(length / geometry.piece_length).clamp_min(1).long()
    segment, rank = _groups_and_ranks(count)
    step = seg_step[segment] / count[segment, None]
    start = seg_start[segment] + step * rank[:, None]
    return _Pieces(start, step, seg_stroke[segment], stroke_drawing)


def _groups_and_ranks(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``counts[i]`` items in group ``i``, concatenated: each item's group and rank in it."""
    group = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    rank = (
        torch.arange(len(group), device=counts.device) - (torch.cumsum(counts, 0) - counts)[group]
    )
    return group, rank


@dataclass(frozen=True)
class _Boxes:
    """Per stroke, the pixel box its ink can reach: a small canvas of its own."""

    origin: torch.Tensor  # (S, 2) int64, first pixel (x, y)
    size: torch.Tensor  # (S, 2) int64, pixels (width, height), at least the window
    first: torch.Tensor  # (S,) int64, the box's first pixel when all boxes are laid flat

    def area(self) -> torch.Tensor:
        return self.size[:, 0] * self.size[:, 1]


def _boxes(pieces: _Pieces, geometry: _Geometry) -> _Boxes:
    """Boxes around every stroke's pieces and their reach, inside the canvas, whole pixels."""
    strokes = len(pieces.stroke_drawing)
    low = torch.minimum(pieces.start, pieces.start + pieces.step)
    high = torch.maximum(pieces.start, pieces.start + pieces.step)
    index = pieces.stroke[:, None].expand(-1, 2)
    stroke_low = low.new_full((strokes, 2), torch.inf).scatter_reduce(0, index, low, "amin")
    stroke_high = high.new_full((strokes, 2), -torch.inf).scatter_reduce(0, index, high, "amax")
    size_pixels = geometry.side // geometry.sub
    # first and last sub-pixel whose centre is within reach, then the pixels holding them
    first = torch.floor((stroke_low - geometry.reach + 0.5) / geometry.sub).long()
    last = torch.floor((stroke_high + geometry.reach - 0.5) / geometry.sub).long()
    first, last = first.clamp(0, size_pixels - 1), last.clamp(0, size_pixels - 1)
    size = (last - first + 1).clamp_min(-(-geometry.window // geometry.sub))
    origin = torch.minimum(first, size_pixels - size)
    area = size[:, 0] * size[:, 1]
    return _Boxes(origin, size, torch.cumsum(area, 0) - area)


def _stroke_groups(
    pieces: _Pieces, boxes: _Boxes, geometry: _Geometry, budget: int
) -> list[tuple[slice, list[slice]]]:
    """Consecutive strokes grouped so each group's work tensors stay near ``budget``.

    Returns, per group, its strokes and its pieces cut into parts of at most
    ``budget / window**2`` pieces; a stroke larger than the budget is a group of its own.
    """
    strokes = len(pieces.stroke_drawing)
    pieces_per = torch.bincount(pieces.stroke, minlength=strokes).cpu().numpy()
    canvas_per = (boxes.area() * geometry.sub**2).cpu().numpy()
    cost = np.maximum(pieces_per * geometry.window**2, canvas_per)
    group = (np.cumsum(cost) - cost) // budget
    bounds = np.append(np.flatnonzero(np.diff(group, prepend=-1)), strokes)
    piece_bounds = np.append(0, np.cumsum(pieces_per))[bounds]
    part = max(1, budget // geometry.window**2)
    return [
        (
            slice(bounds[i], bounds[i + 1]),
            [
                slice(first, min(first + part, piece_bounds[i + 1]))
                for first in range(piece_bounds[i], piece_bounds[i + 1], part)
            ],
        )
        for i in range(len(bounds) - 1)
    ]


def _splat(
    canvas: torch.Tensor,
    pieces: _Pieces,
    part: slice,
    boxes: _Boxes,
    first_stroke: int,
    geometry: _Geometry,
) -> torch.Tensor:
    """``canvas`` with the sub-pixel coverage of the pieces ``part`` maxed into it.

    ``canvas`` holds the boxes of consecutive strokes from ``first_stroke`` on, flat, each
    box tiled (a pixel's ``sub x sub`` sub-pixels contiguous, pixels row by row), so the box
    filter is later one contiguous mean whatever the boxes' sizes.
    """
    sub, window = geometry.sub, geometry.window
    start, step, stroke = pieces.start[part], pieces.step[part], pieces.stroke[part]
    box_origin, box_size = boxes.origin[stroke] * sub, boxes.size[stroke] * sub
    # The window's first sub-pixel: its centre is at most ``reach`` before the piece; kept
    # inside the stroke's box, where it still holds every sub-pixel the piece can touch.
    origin = torch.floor(torch.minimum(start, start + step) - geometry.reach + 0.5)
    origin = torch.maximum(torch.minimum(origin, box_origin + box_size - window), box_origin)
    # Work tensors are (window y, window x, piece): the long axis innermost vectorises.
    cells = origin.T + torch.arange(window, device=start.device)[:, None, None]  # (w, 2, n)
    rel = cells + 0.5 - start.T  # sub-pixel centre - piece start
    inverse = 1.0 / (step * step).sum(dim=1).clamp_min(1e-12)
    along_xy = rel * (step.T * inverse)
    along = (along_xy[:, None, 1] + along_xy[None, :, 0]).clamp(0.0, 1.0)  # (y, x, n)
    dx = torch.addcmul(rel[None, :, 0], along, step[:, 0], value=-1.0)
    dy = torch.addcmul(rel[:, None, 1], along, step[:, 1], value=-1.0)
    # sqrt(d**2 + tiny), not hypot: hypot's gradient is 0/0 on the centre line. Coverage is
    # not clamped to [0, 1] here: amax into a zero canvas drops the negatives, and the canvas
    # is clamped once, which is cheaper than clamping every window.
    distance = torch.addcmul(dx * dx, dy, dy).add_(1e-12).sqrt_()
    coverage = geometry.reach - distance

    # The tiled index, computed in float (exact: far below 2**24): integer // and % are slow.
    inside = cells - box_origin.T
    pixel = torch.floor(inside / sub)
    within = inside - pixel * sub
    column = (pixel[:, 0] * sub**2 + within[:, 0]).long()
    row = (pixel[:, 1] * (box_size[:, 0] * sub) + within[:, 1] * sub).long()
    row += (boxes.first[stroke] - boxes.first[first_stroke]) * sub**2
    index = row[:, None, :] + column[None, :, :]
    return canvas.scatter_reduce(0, index.view(-1), coverage.view(-1), "amax")


def _box_pixels(boxes: _Boxes, strokes: slice, drawing: torch.Tensor, size: int) -> torch.Tensor:
    """Flat image index (drawing, y, x) of every pixel of the boxes of ``strokes``, in order.

    ``drawing`` is each stroke's drawing. Works row by row: a box row is a run of
    consecutive image pixels, so one ``repeat_interleave`` of row offsets does it.
    """
    origin, width, height = boxes.origin[strokes], boxes.size[strokes, 0], boxes.size[strokes, 1]
    device = width.device
    row_stroke, row = _groups_and_ranks(height)
    image_start = (drawing[strokes][row_stroke] * size + origin[row_stroke, 1] + row) * size
    image_start += origin[row_stroke, 0]
    row_width = width[row_stroke]
    box_start = torch.cumsum(row_width, 0) - row_width
    total = int(box_start[-1] + row_width[-1])
    return torch.arange(total, device=device) + torch.repeat_interleave(
        image_start - box_start, row_width, output_size=total
    )


_MOST_INK = 1.0 - 2.0**-20  # keeps log(1 - ink) finite (and its gradient) where ink is full


def coverage(batch: PolylineBatch, config: TorchRenderConfig = TorchRenderConfig()) -> torch.Tensor:
    """Ink coverage in [0, 1], float32 ``(B, size, size)``, on the batch's device.

    Differentiable with respect to ``batch.points`` (through the coverage ramps at stroke
    edges), e.g. for an image loss on a model's samples.
    """
    geometry = _Geometry.of(config)
    if not bool(batch.mask.any()):
        return torch.zeros(
            batch.mask.shape[0], config.size, config.size, device=batch.points.device
        )
    pieces = _pieces(batch, config, geometry)
    boxes = _boxes(pieces, geometry)
    size, device = config.size, batch.points.device
    # cairo's OVER, stroke after stroke: what stays clear is the product of what each
    # stroke leaves clear, summed as logs so that stroke groups can add to it in any order.
    log_clear = torch.zeros(batch.mask.shape[0] * size * size, device=device)
    for strokes, parts in _stroke_groups(pieces, boxes, geometry, config.max_chunk_elements):
        pixels = _box_pixels(boxes, strokes, pieces.stroke_drawing, size)
        canvas = torch.zeros(len(pixels) * geometry.sub**2, device=device)
        for part in parts:
            canvas = _splat(canvas, pieces, part, boxes, strokes.start, geometry)
        ink = canvas.clamp(max=_MOST_INK).view(-1, geometry.sub**2).mean(dim=1)
        log_clear.index_add_(0, pixels, torch.log1p(-ink))
    return -torch.expm1(log_clear).view(-1, size, size)


def render(batch: PolylineBatch, config: TorchRenderConfig = TorchRenderConfig()) -> torch.Tensor:
    """``uint8`` ``(B, size, size)`` images, white strokes on black unless ``config.invert``."""
    levels = torch.round(coverage(batch, config) * 255.0)
    return (255.0 - levels if config.invert else levels).to(torch.uint8)


def render_drawings(
    drawings: Sequence[Drawing],
    config: TorchRenderConfig = TorchRenderConfig(),
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Like ``rasterize.render.render`` (the ink channel): ``uint8`` ``(N, size, size)`` numpy."""
    return render(PolylineBatch.from_drawings(drawings, device), config).cpu().numpy()
