"""A comparison's report folder: the results files, the tables and the index page
(``README.md``) that links every figure; :func:`write_report` writes them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sketchgen.evaluation.metrics import METRICS
from sketchgen.report.aggregate import (
    AGGREGATE_CSV,
    AGGREGATE_JSON,
    ALPHA,
    aggregate,
    ranking,
)
from sketchgen.report.calibration import calibration_markdown, plot_calibration
from sketchgen.report.curves import CURVES_CSV, curves_path, plot_curves, write_curves
from sketchgen.report.results import (
    REAL_FLOOR,
    RESULTS_CSV,
    RESULTS_JSON,
    write_frame,
    write_results,
)
from sketchgen.report.tables import (
    THROUGHPUT_CAPTION,
    Benchmarks,
    Table,
    budgets_table,
    joined,
    latex_table,
    load_benchmarks,
    main_caption,
    main_table,
    markdown_table,
    metric_cell,
    ranking_caption,
    ranking_table,
    seed_caption,
    seed_table,
    throughput_table,
)
from sketchgen.runtime import atomic_write

TABLE_MD = "results.md"  # the main table: mean ± std over seeds
TABLE_TEX = "results.tex"
SEEDS_MD = "seeds.md"  # one row per seed, bootstrap intervals
SEEDS_TEX = "seeds.tex"
RANKING_MD = "ranking.md"
RANKING_TEX = "ranking.tex"
THROUGHPUT_MD = "throughput.md"
THROUGHPUT_TEX = "throughput.tex"
INDEX = "README.md"
CALIBRATION_CSV = "calibration.csv"
CALIBRATION_PNG = "calibration.png"
RANKED = "fid"  # the metric the ranking orders models by
SELECTION = {  # checkpoint selection rules as the index explains them
    "last": "the last checkpoint of each run",
    "best-valid": "each run's checkpoint with the lowest validation FID, then scored once on "
                  "the test set",
}


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
    seeds: tuple[int, ...]  # the configured seeds, in config order
    select: str  # checkpoint selection rule, a key of SELECTION
    set_sizes: Mapping[str, tuple[int, int, int]]  # category -> drawings in train, valid, test
    evaluator: tuple[str, ...]  # lines naming the evaluator: sha256, training manifest
    overhead: str  # one line: measured validation cost against training time; "" if none ran
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


def sets_table(set_sizes: Mapping[str, tuple[int, int, int]]) -> Table:
    """Drawings per category in the three disjoint real sets."""
    rows = tuple((category, *(f"{count:,}" for count in counts))
                 for category, counts in set_sizes.items())
    return Table(("Category", "Train", "Valid", "Test"), rows, "lrrr")


def index_text(
    results: pd.DataFrame,
    info: RunInfo,
    figures: Sequence[Figure],
    throughput: Benchmarks | None,
    curves: Sequence[Figure] = (),
    calibration: pd.DataFrame | None = None,
) -> str:
    """The report's README.md: setup, evaluator, data sets, budgets, main table, ranking,
    per-seed table, floor, learning curves, calibration, throughput, every figure."""
    aggregated = aggregate(results)
    parts = [
        f"# Comparison: {info.name}",
        "",
        f"**{info.label}.**",
        "",
        f"- Device: {joined(results['device'])}",
        f"- Categories: {', '.join(info.categories)} at {info.size}×{info.size} px",
        f"- Samples: N = {joined(results['n'])} generated drawings per model and category",
        f"- Seeds: {', '.join(map(str, info.seeds))} (each model × category × seed is its own "
        "run; the real-vs-real floor is drawn once)",
        f"- Checkpoint selection: {info.select}: {SELECTION[info.select]}",
        f"- Wall time: {info.elapsed_s / 60:.1f} min",
        *([f"- Evaluation overhead: {info.overhead}"] if info.overhead else []),
        *(f"- {note}" for note in info.notes),
        "",
        "## Evaluator",
        "",
        f"- Feature space (FID, KID, precision/recall): {joined(results['feature_space'])}",
        f"- Classifier: {info.classifier}",
        *(f"- {line}" for line in info.evaluator),
        "- Reports whose evaluator sha256 is the same computed their numbers in the same "
        "feature space and are comparable.",
        "",
        "## Real data sets",
        "",
        "Disjoint per category: models train on the first, learning curves and checkpoint "
        "selection use the second, every final number and the real-vs-real floor the third.",
        "",
        markdown_table(sets_table(info.set_sizes)),
        "## Budgets",
        "",
        "Means over seeds.",
        "",
        markdown_table(budgets_table(aggregated)),
        "## Results",
        "",
        f"{main_caption(aggregated)} Source of truth: [{RESULTS_CSV}]({RESULTS_CSV}), "
        f"[{RESULTS_JSON}]({RESULTS_JSON}) (per seed), [{AGGREGATE_CSV}]({AGGREGATE_CSV}), "
        f"[{AGGREGATE_JSON}]({AGGREGATE_JSON}); LaTeX: [{TABLE_TEX}]({TABLE_TEX}).",
        "",
        markdown_table(main_table(aggregated)),
        *(f"- {metric.title}: {metric.meaning}." for metric in METRICS.values()),
        f"- {REAL_FLOOR}: N other held-out real drawings scored like a model's: the best score "
        "to expect at this N.",
        "",
        "## Ranking",
        "",
        f"{ranking_caption(RANKED, ALPHA)} LaTeX: [{RANKING_TEX}]({RANKING_TEX}).",
        "",
        markdown_table(ranking_table(ranking(results, RANKED, ALPHA), RANKED)),
        "## Per seed",
        "",
        f"{seed_caption(results, info.ci_level)} LaTeX: [{SEEDS_TEX}]({SEEDS_TEX}).",
        "",
        markdown_table(seed_table(results)),
        "## Real-vs-real floor",
        "",
        *floor_lines(results),
        "",
    ]
    if curves:
        parts += ["## Learning curves", "",
                  f"Every validation of every run: [{CURVES_CSV}]({CURVES_CSV}).", ""]
        parts += [f"![{figure.caption}]({figure.path})\n" for figure in curves]
    if calibration is not None:
        parts += [
            "## Calibration of the feature space",
            "",
            f"FID, KID, precision and recall of real test drawings against the reference "
            f"under standard degradations, in {joined(results['feature_space'])} at the "
            "report's N: a model's score reads as a degradation of real drawings (after Heusel "
            f"et al. 2017, Fig. 3). Source: [{CALIBRATION_CSV}]({CALIBRATION_CSV}).",
            "",
            calibration_markdown(calibration),
            f"![Calibration]({CALIBRATION_PNG})",
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
    others = [figure for figure in figures if figure not in grids]
    if others:
        parts += ["## Figures", ""]
    for figure in others:
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
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _tables(path_md: str, path_tex: str, table: Table, caption: str, out_dir: Path
            ) -> list[Path]:
    return [_write(out_dir / path_md, markdown_table(table)),
            _write(out_dir / path_tex, latex_table(table, caption))]


def write_report(
    results: pd.DataFrame,
    out_dir: Path,
    info: RunInfo,
    figures: Sequence[Figure] = (),
    benchmarks_json: Path | None = None,
    curves: pd.DataFrame | None = None,
    calibration: pd.DataFrame | None = None,
) -> list[Path]:
    """Write results (per seed and aggregated), tables, learning curves, throughput and the
    index into ``out_dir``; return the paths.

    ``figures`` are drawn by the caller beforehand; a missing one is an error, so the index
    never links a file that is not there. ``curves``: the validation scores of every run
    (``sketchgen.report.curves``), written to ``curves.csv`` and drawn per category.
    ``calibration``: ``sketchgen.evaluation.calibration.calibrate``'s frame, written to
    ``calibration.csv``, drawn and tabulated in the index.
    """
    missing = [figure.path for figure in figures if not (out_dir / figure.path).is_file()]
    if missing:
        raise ValueError(f"figures missing from {out_dir}: {missing}")
    written = list(write_results(results, out_dir))
    aggregated = aggregate(results)
    written += write_frame(aggregated, out_dir / AGGREGATE_CSV, out_dir / AGGREGATE_JSON)
    written += _tables(TABLE_MD, TABLE_TEX, main_table(aggregated), main_caption(aggregated),
                       out_dir)
    written += _tables(SEEDS_MD, SEEDS_TEX, seed_table(results),
                       seed_caption(results, info.ci_level), out_dir)
    written += _tables(RANKING_MD, RANKING_TEX,
                       ranking_table(ranking(results, RANKED, ALPHA), RANKED),
                       ranking_caption(RANKED, ALPHA), out_dir)
    curve_figures = []
    if curves is not None:
        written.append(write_curves(curves, out_dir))
        for category in pd.unique(curves["category"]):
            curve_figures.append(Figure(curves_path(category), f"Learning curves: {category}"))
            written.append(plot_curves(curves, category, out_dir / curves_path(category)))
    if calibration is not None:
        written.append(atomic_write(out_dir / CALIBRATION_CSV, lambda tmp: calibration.to_csv(
            tmp, index=False, float_format="%.10g")))
        written.append(plot_calibration(calibration, out_dir / CALIBRATION_PNG,
                                        f"Calibration of {joined(results['feature_space'])}"))
    throughput = None
    if benchmarks_json is not None:
        throughput = load_benchmarks(benchmarks_json)
        written += _tables(THROUGHPUT_MD, THROUGHPUT_TEX, throughput_table(throughput),
                           THROUGHPUT_CAPTION, out_dir)
    index = index_text(results, info, figures, throughput, curve_figures, calibration)
    written.append(_write(out_dir / INDEX, index))
    return written
