"""Google's raw -> simplified preprocessing of Quick, Draw! drawings.

Google describes the simplified files as (github.com/googlecreativelab/quickdraw-dataset):

1. align the drawing to the top-left corner, to have minimum values of 0;
2. uniformly scale the drawing, to have a maximum value of 255;
3. resample all strokes with a 1 pixel spacing;
4. simplify all strokes using the Ramer-Douglas-Peucker algorithm with an epsilon of 2.0.
"""

from __future__ import annotations

import numpy as np

from rasterize.drawings import Drawing

SIMPLIFIED_MAX = 255.0  # Google's simplified coordinates span 0..255


def align_and_scale(drawing: Drawing, target_max: float = SIMPLIFIED_MAX) -> Drawing:
    """Shift the drawing so its minimum x and y are 0, then scale it uniformly so that the
    larger of its width and height is ``target_max``. Times are kept.

    A drawing with no extent (all points equal) is only shifted: there is nothing to scale.
    Any finite coordinates work, however huge or tiny: dividing by the extent before
    multiplying keeps tiny extents finite, and huge ones are quartered first so that
    ``max - min`` cannot overflow.
    """
    points = drawing.points()
    lo, hi = points.min(axis=0), points.max(axis=0)
    with np.errstate(over="ignore"):
        spans_overflow = not np.isfinite(hi - lo).all()
    unit = 0.25 if spans_overflow else 1.0  # |x| <= 1.8e308, so a quartered span is finite
    origin = lo * unit
    extent = float((hi * unit - origin).max())
    if extent == 0:
        return _with_strokes(drawing, tuple(s - lo for s in drawing.strokes), drawing.times)
    strokes = tuple((s * unit - origin) / extent * target_max for s in drawing.strokes)
    return _with_strokes(drawing, strokes, drawing.times)


def _with_strokes(
    drawing: Drawing, strokes: tuple[np.ndarray, ...], times: tuple[np.ndarray, ...] | None
) -> Drawing:
    return Drawing(strokes, times, **drawing.metadata())


__all__ = ["SIMPLIFIED_MAX", "align_and_scale"]
