"""The calibration of a feature space in a report: its figure and its table.

The frame is ``sketchgen.evaluation.calibration.calibrate``'s (or its CSV read back): one row
per degradation and strength, after the ``none`` row (the real-vs-real floor).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sketchgen.evaluation.calibration import COLUMNS, DEGRADATIONS, NONE
from sketchgen.evaluation.metrics import METRICS
from sketchgen.report.figures import save_figure
from sketchgen.report.tables import Table, format_number, heading, markdown_table

_PANEL_COLUMNS = 4


def _check(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing or not (frame["degradation"] == NONE).any():
        raise ValueError(f"not a calibration frame: missing columns {missing} or the "
                         f"{NONE!r} row")
    return frame


def _floor(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["degradation"] == NONE].iloc[0]


def plot_calibration(frame: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """One panel per degradation: FID against strength (severity to the right), the
    real-vs-real floor dashed."""
    frame = _check(frame)
    names = [name for name in dict.fromkeys(frame["degradation"]) if name != NONE]
    rows = math.ceil(len(names) / _PANEL_COLUMNS)
    figure = Figure(figsize=(3.2 * _PANEL_COLUMNS, 2.7 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, _PANEL_COLUMNS, squeeze=False).ravel()
    floor = float(_floor(frame)["fid"])
    for axis, name in zip(axes, names, strict=False):
        shown = frame[frame["degradation"] == name]
        axis.plot(shown["strength"], shown["fid"], marker="o")
        axis.axhline(floor, color="grey", linestyle="--", linewidth=1, label="real vs real")
        strengths = list(shown["strength"])
        if strengths != sorted(strengths):  # severity grows as the strength falls (k)
            axis.set_xscale("log")
            axis.invert_xaxis()
            axis.minorticks_off()
        axis.set_xticks(strengths, [f"{strength:g}" for strength in strengths])
        unit = DEGRADATIONS[name].unit if name in DEGRADATIONS else "strength"
        axis.set(title=name, xlabel=unit, ylabel="FID")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    for axis in axes[len(names):]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def calibration_markdown(frame: pd.DataFrame) -> str:
    """The frame as a Markdown table: the floor first, then every degradation's strengths."""
    frame = _check(frame)
    metrics = [METRICS[name] for name in COLUMNS[2:]]
    rows = []
    for _, row in frame.iterrows():
        name = row["degradation"]
        unit = DEGRADATIONS[name].unit if name in DEGRADATIONS else ""
        label = "none (real vs real)" if name == NONE else f"{name} ({unit})"
        strength = "–" if name == NONE else format_number(float(row["strength"]))
        rows.append((label, strength, *(format_number(row[m.name], m.decimals)
                                        for m in metrics)))
    header = ("Degradation", "Strength", *(heading(m) for m in metrics))
    return markdown_table(Table(header, tuple(rows), "lr" + "r" * len(metrics)))
