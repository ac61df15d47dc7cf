"""A comparison's report folder: the results files, the tables and the index page
(``README.md``) that links every figure; :func:`write_report` writes them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sketchgen.evaluation.metrics import METRICS
from sketchgen.report.results import REAL_FLOOR, RESULTS_CSV, RESULTS_JSON, write_results
from sketchgen.report.tables import (
    THROUGHPUT_CAPTION,
    Benchmarks,
    Table,
    budgets_table,
    joined,
    latex_table,
    load_benchmarks,
    main_table,
    markdown_table,
    metric_cell,
    table_caption,
    throughput_table,
)

TABLE_MD = "results.md"
TABLE_TEX = "results.tex"
THROUGHPUT_MD = "throughput.md"
THROUGHPUT_TEX = "throughput.tex"
INDEX = "README.md"


@dataclass(frozen=True)
class Figure:
    """A figure file of the report, linked from the index."""

    path: str  # relative to the report directory, forward slashes
    caption: str  # one line shown above the image (alt text in the samples table)
    # A sample grid of one model (or REAL_FLOOR for real drawings) and category goes into the
    # index's samples table; any other figure (curves, confusion, ...) gets its own section.
    model: str = ""
    category: str = ""


@dataclass(frozen=True)
class RunInfo:
    """What the index states about the run beyond the results table."""

    name: str  # comparison name from the config
    label: str  # one line saying what kind of budget this is (e.g. "Small CPU budget")
    categories: tuple[str, ...]  # in config order
    size: int  # bitmap side in pixels
    classifier: str  # one line: classifier architecture and its test accuracy
    ci_level: float  # coverage of the bootstrap intervals, e.g. 0.95
    elapsed_s: float  # wall time of the whole comparison
    notes: tuple[str, ...] = ()  # extra lines for the index, e.g. how many sketches were dropped


def floor_lines(results: pd.DataFrame) -> list[str]:
    """One bullet per category: the real-vs-real FID and KID with their intervals."""
    fid, kid = METRICS["fid"], METRICS["kid"]
    floor = results[results["model"] == REAL_FLOOR]
    return [
        f"- {row['category']}: FID {metric_cell(row, fid)}, KID {metric_cell(row, kid)} "
        f"(two disjoint real sets of N = {int(row['n'])})"
        for _, row in floor.iterrows()
    ]


def index_text(
    results: pd.DataFrame,
    info: RunInfo,
    figures: Sequence[Figure],
    throughput: Benchmarks | None,
) -> str:
    """The report's README.md: setup, budgets, main table, floor, throughput, every figure."""
    parts = [
        f"# Comparison: {info.name}",
        "",
        f"**{info.label}.**",
        "",
        f"- Device: {joined(results['device'])}",
        f"- Categories: {', '.join(info.categories)} at {info.size}×{info.size} px",
        f"- Samples: N = {joined(results['n'])} generated drawings per model and category",
        f"- Seeds: {joined(results['seed'])}",
        f"- Feature space (FID, KID, precision/recall): {joined(results['feature_space'])}",
        f"- Classifier: {info.classifier}",
        f"- Wall time: {info.elapsed_s / 60:.1f} min",
        *(f"- {note}" for note in info.notes),
        "",
        "## Budgets",
        "",
        markdown_table(budgets_table(results)),
        "## Results",
        "",
        f"{table_caption(results, info.ci_level)} Source of truth: [{RESULTS_CSV}]({RESULTS_CSV}),"
        f" [{RESULTS_JSON}]({RESULTS_JSON}); LaTeX: [{TABLE_TEX}]({TABLE_TEX}).",
        "",
        markdown_table(main_table(results)),
        *(f"- {metric.title}: {metric.meaning}." for metric in METRICS.values()),
        f"- {REAL_FLOOR}: N other held-out real drawings scored like a model's: the best score "
        "to expect at this N.",
        "",
        "## Real-vs-real floor",
        "",
        *floor_lines(results),
        "",
    ]
    if throughput is not None:
        parts += [
            "## Throughput",
            "",
            f"From pytest-benchmark on {throughput.machine or 'an unnamed machine'}; ratios are "
            "against baselines timed in the same run. "
            f"LaTeX: [{THROUGHPUT_TEX}]({THROUGHPUT_TEX}).",
            "",
            markdown_table(throughput_table(throughput)),
        ]
    grids = [figure for figure in figures if figure.model and figure.category]
    if grids:
        parts += ["## Samples", "", markdown_table(samples_table(grids))]
    parts += ["## Figures", ""]
    for figure in figures:
        if figure not in grids:
            parts += [f"### {figure.caption}", "", f"![{figure.caption}]({figure.path})", ""]
    return "\n".join(parts)


def samples_table(grids: Sequence[Figure]) -> Table:
    """Sample grids as images in a model x category table, in first-seen order."""
    models = list(dict.fromkeys(figure.model for figure in grids))
    categories = list(dict.fromkeys(figure.category for figure in grids))
    cell = {(figure.model, figure.category): figure for figure in grids}
    rows = tuple(
        (model, *(_image(cell.get((model, category))) for category in categories))
        for model in models
    )
    return Table(("Model", *categories), rows, "l" * (1 + len(categories)))


def _image(figure: Figure | None) -> str:
    return f"![{figure.caption}]({figure.path})" if figure else ""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_report(
    results: pd.DataFrame,
    out_dir: Path,
    info: RunInfo,
    figures: Sequence[Figure] = (),
    benchmarks_json: Path | None = None,
) -> list[Path]:
    """Write results, tables, throughput and the index into ``out_dir``; return the paths.

    The figures are drawn by the caller beforehand; a missing one is an error, so the index
    never links a file that is not there.
    """
    missing = [figure.path for figure in figures if not (out_dir / figure.path).is_file()]
    if missing:
        raise ValueError(f"figures missing from {out_dir}: {missing}")
    written = list(write_results(results, out_dir))
    table = main_table(results)
    written.append(_write(out_dir / TABLE_MD, markdown_table(table)))
    written.append(
        _write(out_dir / TABLE_TEX, latex_table(table, table_caption(results, info.ci_level)))
    )
    throughput = None
    if benchmarks_json is not None:
        throughput = load_benchmarks(benchmarks_json)
        speed = throughput_table(throughput)
        written.append(_write(out_dir / THROUGHPUT_MD, markdown_table(speed)))
        written.append(_write(out_dir / THROUGHPUT_TEX, latex_table(speed, THROUGHPUT_CAPTION)))
    written.append(_write(out_dir / INDEX, index_text(results, info, figures, throughput)))
    return written
