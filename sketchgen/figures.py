"""Image files: image grids (PNG), learning GIFs, curves from JSONL logs (losses, per-layer
gradient norms).

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
from PIL import Image

from sketchgen.runtime import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    return _write_png(figure, path)


def _write_png(figure: Figure, path: str | Path) -> Path:
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


def gradient_norms(logs: Sequence[str | Path], layer: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One layer's gradient norms in runs' log.jsonl files (the ``grad_norms`` records the
    harness writes every ``grad_norm_every`` steps; ``layer`` a parameter name such as
    ``G.stem.dense.weight``): the steps every log has, and there the geometric mean over the
    logs (norms spread over decades), the lowest and the highest norm."""
    runs = [{r["step"]: r["grad_norms"] for r in read_jsonl(log) if "grad_norms" in r}
            for log in logs]
    for log, run in zip(logs, runs, strict=True):
        known = set().union(*run.values())
        if layer not in known:
            raise ValueError(f"{log}: no gradient norms of {layer!r}; the log has "
                             f"{', '.join(sorted(known)[:8]) or 'none'}")
    steps = sorted(set.intersection(*(set(run) for run in runs)))
    values = np.array([[run[step][layer] for step in steps] for run in runs], dtype=float)
    return (np.array(steps), np.exp(np.log(values).mean(axis=0)), values.min(axis=0),
            values.max(axis=0))


def plot_gradient_norms(runs: Mapping[str, Sequence[str | Path]], layers: Sequence[str],
                        path: str | Path, title: str = "", columns: int = 1) -> Path:
    """Per-layer gradient norms over training: one panel per layer, one line per group of
    runs (label -> logs, e.g. one per seed): :func:`gradient_norms`' geometric mean, shaded
    from the lowest to the highest norm, on a log scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = math.ceil(len(layers) / columns)
    figure = Figure(figsize=(4.2 * columns, 2.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True).ravel()
    for axis, layer in zip(axes, layers, strict=False):
        for label, logs in runs.items():
            steps, mean, low, high = gradient_norms(logs, layer)
            line, = axis.plot(steps, mean, label=label)
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set(yscale="log", xlabel="step")
        axis.set_title(layer, fontsize="small")
        axis.grid(alpha=0.3)
    for axis in axes[len(layers):]:
        axis.set_visible(False)
    axes[0].legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    return _write_png(figure, path)
