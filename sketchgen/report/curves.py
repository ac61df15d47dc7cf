"""Learning curves of a comparison: every run's validation scores, as ``curves.csv`` and one
figure per category.

The frame has one row per validation of a run (:data:`CURVE_COLUMNS`: model, category, seed,
the step and the training seconds it was taken at, and the validation FID, precision and
recall). The figure has two panels, validation FID against steps and against training
seconds: per model a line through the mean over seeds at each step, shaded from the lowest to
the highest seed (the seeds that reached that step: a seconds budget stops seeds at different
steps).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sketchgen.report.figures import save_figure
from sketchgen.runtime import atomic_write

CURVES_CSV = "curves.csv"
CURVE_COLUMNS = ("model", "category", "seed", "step", "train_seconds", "fid", "precision",
                 "recall")


def check_curves(frame: pd.DataFrame) -> None:
    """Raise ValueError unless every column of :data:`CURVE_COLUMNS` is present."""
    missing = [column for column in CURVE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"curves table lacks columns {missing}")


def write_curves(frame: pd.DataFrame, out_dir: Path) -> Path:
    """Write ``curves.csv``: the :data:`CURVE_COLUMNS` of ``frame``, in its row order."""
    check_curves(frame)
    table = frame.loc[:, list(CURVE_COLUMNS)]
    return atomic_write(out_dir / CURVES_CSV,
                        lambda tmp: table.to_csv(tmp, index=False, float_format="%.10g"))


def curves_path(category: str) -> str:
    """Where the curves figure of ``category`` goes in the report folder."""
    return f"curves/{category.replace(' ', '_')}.png"


def plot_curves(frame: pd.DataFrame, category: str, path: str | Path) -> Path:
    """Validation FID of ``category``'s runs against steps and against training seconds; see
    the module doc. The FID axis is logarithmic (untrained to trained spans decades)."""
    check_curves(frame)
    rows = frame[frame["category"] == category]
    if rows.empty:
        raise ValueError(f"curves table has no rows of category {category!r}")
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    by_steps, by_seconds = figure.subplots(1, 2, sharey=True)
    for model, runs in rows.groupby("model", sort=False):
        at = runs.groupby("step", sort=True).agg(
            seconds=("train_seconds", "mean"), fid=("fid", "mean"),
            low=("fid", "min"), high=("fid", "max"))
        for axis, x in ((by_steps, at.index), (by_seconds, at["seconds"])):
            line, = axis.plot(x, at["fid"], marker="o", markersize=3, label=model)
            axis.fill_between(x, at["low"], at["high"], color=line.get_color(), alpha=0.2,
                              linewidth=0)
    by_steps.set(xlabel="step", ylabel="validation FID", yscale="log")
    by_seconds.set(xlabel="training seconds (mean over seeds)")
    for axis in (by_steps, by_seconds):
        axis.grid(alpha=0.3)
    by_steps.legend(loc="best", fontsize="small")
    seeds = rows["seed"].nunique()
    figure.suptitle(f"{category}: validation FID, mean over {seeds} seed{'s' * (seeds > 1)}"
                    " (band: lowest to highest)")
    return save_figure(figure, path)
