"""Image files: image grids (PNG), learning GIFs, curves from JSONL logs.

Written by the training harness (sample grids, the learning GIF, loss curves), by sampling, and
by comparisons (the report's sample grids); models hand over arrays and write no files. A base
module: it imports only ``sketchgen.runtime`` (atomic writes).

Generic on purpose: images are uint8 arrays in the rasterizer's layout (N, H, W), white
strokes on black; curves come from any JSONL log whose records carry a ``step`` and numbers.
matplotlib is used through its Agg canvas directly (no pyplot, no global backend switch), so
figures work headless and in worker processes. Files are written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import orjson
from PIL import Image

from sketchgen.runtime import atomic_write

GRID_BORDER = 64  # grey between tiles: visible on both the black ground and white strokes


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2,
               border: int = GRID_BORDER) -> np.ndarray:
    """Tile uint8 images (N, H, W) into one (rows*(H+pad)+pad, cols*(W+pad)+pad) image.

    ``columns`` defaults to ceil(sqrt(N)); empty cells of the last row stay ``border``.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    count, height, width = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad), border,
                   dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid


def _png_bytes(image: np.ndarray, scale: int) -> bytes:
    picture = Image.fromarray(image)
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a uint8 (H, W) image as PNG, enlarged ``scale`` times without smoothing."""
    data = _png_bytes(np.asarray(image, dtype=np.uint8), scale)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save_grid(images: np.ndarray, path: str | Path, columns: int | None = None,
              scale: int = 2) -> Path:
    """:func:`image_grid` of ``images`` written as PNG."""
    return save_png(image_grid(images, columns), path, scale)


def save_gif(frames: Sequence[str | Path | np.ndarray], path: str | Path,
             duration_ms: int = 300, hold_last_ms: int = 1500) -> Path:
    """An animated GIF from PNG paths or uint8 arrays (all the same size), looping forever;
    the last frame is held longer so the final state is readable."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    pictures = [Image.open(f).convert("L") if isinstance(f, (str, Path))
                else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    durations = [duration_ms] * (len(pictures) - 1) + [hold_last_ms]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=durations, loop=0)
    data = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a JSONL file; a torn last line (a killed writer) is ignored."""
    records = []
    with open(path, "rb") as handle:
        for line in handle:
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                if line.endswith(b"\n"):
                    raise
    return records


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first values average what exists so far)."""
    if window <= 1:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (cumulative[end] - cumulative[start]) / (end - start)


def plot_curves(records: Iterable[dict], panels: Sequence[Sequence[str]], path: str | Path,
                title: str = "", smooth: int = 1) -> Path:
    """One panel per key group, each key's value against ``step``; ``smooth`` > 1 draws a
    trailing moving average over the raw curve (drawn faint). Keys missing from every record
    are skipped; a record lacking a key is skipped for that key only."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = list(records)
    figure = Figure(figsize=(7, 2.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for axis, keys in zip(axes, panels, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in records
                      if isinstance(r.get(key), (int, float))]
            if not points:
                continue
            steps, values = (np.asarray(v, dtype=float) for v in zip(*points, strict=True))
            if smooth > 1:
                line, = axis.plot(steps, values, alpha=0.25, linewidth=0.8)
                axis.plot(steps, _smooth(values, smooth), color=line.get_color(), label=key)
            else:
                axis.plot(steps, values, label=key)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    data = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def training_curves(log_path: str | Path, path: str | Path, title: str = "") -> Path:
    """Loss curves from a training log: ``loss*`` keys in one panel, the other per-step
    numbers (e.g. D(x), D(G(z))) in a second one; smoothed over ~1% of the run."""
    records = [r for r in read_jsonl(log_path) if "step" in r]
    keys = list(dict.fromkeys(k for r in records for k, v in r.items()
                              if k not in ("step", "time") and isinstance(v, (int, float))))
    losses = [k for k in keys if k.startswith("loss")]
    others = [k for k in keys if not k.startswith("loss")]
    panels = [group for group in (losses, others) if group] or [[]]
    return plot_curves(records, panels, path, title, smooth=max(1, len(records) // 100))
