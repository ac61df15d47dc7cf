"""The report's own figures, drawn from evaluation results (matplotlib's Agg canvas, no
display, no pyplot; written atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sketchgen.runtime import atomic_write

if TYPE_CHECKING:
    from sketchgen.evaluation.evaluator import Evaluation


def plot_confusion(evaluation: Evaluation, path: str | Path, title: str | None = None) -> Path:
    """Row-normalised confusion matrix as an image (matplotlib's Agg backend, no display)."""
    rates = evaluation.rates()
    count = len(evaluation.class_names)
    side = max(4.0, 0.45 * count + 2.0)
    figure = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    figure.colorbar(shown, ax=axes, fraction=0.046, label="fraction of the true class")
    axes.set_xticks(range(count), evaluation.class_names, rotation=60, ha="right")
    axes.set_yticks(range(count), evaluation.class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if count <= 20:  # beyond that the numbers no longer fit the cells
        for (i, j), rate in np.ndenumerate(rates):
            colour = "white" if rate > 0.5 else "black"
            axes.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_title(title or f"accuracy {evaluation.accuracy:.3f} on {evaluation.n} drawings")
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` atomically in the format its suffix names (PNG without one)."""
    path = Path(path)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format=path.suffix[1:] or "png"))
