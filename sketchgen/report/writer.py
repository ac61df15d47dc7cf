"""Report writers for a comparison run: results files, Markdown/LaTeX tables, throughput, index.

The results table (a pandas DataFrame, one row per model x category x feature space) is the
source of truth; every other file is rendered from it. Its columns are :data:`ID_COLUMNS`,
then for each metric in :data:`METRICS` the value and, where a bootstrap interval was
computed, ``<metric>_low`` / ``<metric>_high``. Rows whose model is :data:`REAL_FLOOR` hold
the real-vs-real floor: two disjoint real halves of the same category scored like a model.

Tables are written by hand (no ``tabulate``, no ``Styler``/jinja2) so the output only
depends on this module: Markdown pipes, and LaTeX ``booktabs`` rules.

The throughput table reads pytest-benchmark's JSON (``--benchmark-json``): for every entry of
its ``benchmarks`` list the name, ``stats.mean`` (seconds per call) and every ``extra_info``
entry, sorted into columns by the benchmarks' naming convention (:data:`THROUGHPUT_COLUMNS`):
rates ``*_per_s``, ratios against the baseline timed in the same run (``speedup*``,
``*_vs_*``), ``*_seconds``, targets, and the setup (sizes, batch, device, threads).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pandas as pd

REAL_FLOOR = "real-vs-real"  # model name of the floor rows: held-out real drawings as "samples"

ID_COLUMNS = (
    "model",  # registry name, or REAL_FLOOR
    "category",  # Quick, Draw! category the samples were scored against
    "n",  # generated (and real reference) drawings per row
    "seed",  # seed of training, sampling and the bootstrap
    "steps",  # training budget in optimiser steps (0 for the floor)
    "batch_size",  # training batch size (0 for the floor)
    "device",  # where the model was trained and sampled
    "feature_space",  # name of the features FID/KID/precision/recall were computed in
)


@dataclass(frozen=True)
class Metric:
    """How one metric column is labelled and printed in the tables."""

    column: str  # column name in the results frame
    name: str  # as the tables and the legend call it
    higher_is_better: bool  # the header's arrow
    meaning: str  # one line for the index's legend
    # None: 3 significant digits (FID and KID scale with the feature space, so no fixed
    # number of decimals suits every classifier); else this many decimals (values in [0, 1])
    decimals: int | None = None

    @property
    def label(self) -> str:
        return f"{self.name} {'↑' if self.higher_is_better else '↓'}"


METRICS = (
    Metric("fid", "FID", False, "Fréchet distance between Gaussian fits of the generated and the "
           "held-out real drawings' features; in the classifier's feature space, so not "
           "comparable with Inception FIDs"),
    Metric("kid", "KID", False, "unbiased squared MMD with a cubic kernel on the same features; "
           "can dip below 0 when the sets are alike"),
    Metric("precision", "Precision", True, "share of generated drawings inside the real 3-NN "
           "feature manifold (fidelity)", 3),
    Metric("recall", "Recall", True, "share of real drawings inside the generated 3-NN manifold "
           "(coverage, diversity)", 3),
    Metric("recognizability", "Recognizability", True, "share of generated drawings the "
           "classifier assigns to the intended category; on the real-vs-real rows, its "
           "accuracy on held-out real drawings", 3),
    Metric("blank", "Blank", False, "share of generated drawings without one ink pixel "
           "(none at grey level 128 or brighter): a generator that draws nothing", 3),
    Metric("duplicates", "Duplicates", False, "share of generated drawings identical, pixel "
           "for pixel, to an earlier one of the same N: hard mode collapse", 3),
)

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
TABLE_MD = "results.md"
TABLE_TEX = "results.tex"
THROUGHPUT_MD = "throughput.md"
THROUGHPUT_TEX = "throughput.tex"
INDEX = "README.md"


# -- results files ---------------------------------------------------------------------------


def check_results(results: pd.DataFrame) -> None:
    """Raise ValueError unless every identity and metric column is present."""
    required = [*ID_COLUMNS, *(metric.column for metric in METRICS)]
    missing = [column for column in required if column not in results.columns]
    if missing:
        raise ValueError(f"results table lacks columns {missing}")


def write_results(results: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` (a list of row objects, NaN as null)."""
    check_results(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / RESULTS_CSV, out_dir / RESULTS_JSON
    results.to_csv(csv_path, index=False, float_format="%.10g")
    records = [
        {key: _json_value(value) for key, value in row.items()}
        for row in results.to_dict(orient="records")
    ]
    json_path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2) + b"\n")
    return csv_path, json_path


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _json_value(value.item())
    return value


def read_results(path: Path) -> pd.DataFrame:
    """Read a ``results.csv`` or ``results.json`` back into a frame."""
    if path.suffix == ".json":
        return pd.DataFrame(orjson.loads(path.read_bytes()))
    return pd.read_csv(path)


# -- cell formatting -------------------------------------------------------------------------


def format_number(value, decimals: int | None = None) -> str:
    """``decimals`` fixed, or (None) integers exactly and floats to 3 significant digits
    (but whole: 31,508 stays 31,508), thousands separated, an exponent only below 0.001;
    missing or non-finite numbers print as an en dash, anything else (text, lists) as ``str``.
    """
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral) and decimals is None:
        return f"{value:,}"  # counts stay exact
    value = float(value)
    if not math.isfinite(value):
        return "–"
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if exponent < -3:
        return f"{value:.2e}"
    return f"{value:,.{max(2 - exponent, 0)}f}"


def metric_cell(row: pd.Series, metric: Metric) -> str:
    """``value [low, high]`` when the row carries a bootstrap interval, else ``value``."""
    value = format_number(row[metric.column], metric.decimals)
    low, high = row.get(f"{metric.column}_low"), row.get(f"{metric.column}_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return value
    low, high = (format_number(bound, metric.decimals) for bound in (low, high))
    return f"{value} [{low}, {high}]"


@dataclass(frozen=True)
class Table:
    """Text cells of a table, rendered identically to Markdown and LaTeX."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str  # one letter per column: "l" (text) or "r" (numbers)

    def __post_init__(self):
        widths = {len(self.header), len(self.align), *(len(row) for row in self.rows)}
        if len(widths) != 1 or set(self.align) - {"l", "r"}:
            raise ValueError(f"table rows, header and alignment {self.align!r} do not agree")


def main_table(results: pd.DataFrame) -> Table:
    """One line per results row, categories in first-seen order, the floor first in each."""
    check_results(results)
    category_order = {category: i for i, category in enumerate(pd.unique(results["category"]))}
    ordered = results.assign(
        _category=results["category"].map(category_order),
        _floor_last=results["model"] != REAL_FLOOR,
    ).sort_values(["_category", "_floor_last"], kind="stable")
    rows = tuple(
        (str(row["model"]), str(row["category"]), str(int(row["n"])))
        + tuple(metric_cell(row, metric) for metric in METRICS)
        for _, row in ordered.iterrows()
    )
    header = ("Model", "Category", "N", *(metric.label for metric in METRICS))
    return Table(header, rows, "llr" + "r" * len(METRICS))


# -- Markdown and LaTeX ----------------------------------------------------------------------


def markdown_table(table: Table) -> str:
    """A GitHub pipe table."""
    lines = [_markdown_row(table.header)]
    lines.append("|" + "|".join(":---" if a == "l" else "---:" for a in table.align) + "|")
    lines += [_markdown_row(row) for row in table.rows]
    return "\n".join(lines) + "\n"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; the headers' arrows become math."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def latex_table(table: Table, caption: str) -> str:
    """A ``booktabs`` table: ``\\toprule``, ``\\midrule`` under the header, ``\\bottomrule``."""
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{latex_escape(caption)}}}",
            rf"\begin{{tabular}}{{{table.align}}}",
            r"\toprule",
            _latex_row(table.header),
            r"\midrule",
            *(_latex_row(row) for row in table.rows),
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def _latex_row(cells: Sequence[str]) -> str:
    return " & ".join(latex_escape(cell) for cell in cells) + r" \\"


def table_caption(results: pd.DataFrame, ci_level: float) -> str:
    """One sentence naming the feature space, N, seeds, device and the interval level."""
    return (
        f"Features: {_joined(results['feature_space'])}; N = {_joined(results['n'])} per row; "
        f"seed {_joined(results['seed'])}; device {_joined(results['device'])}; "
        f"{ci_level:.0%} bootstrap intervals in brackets."
    )


def _joined(column: pd.Series) -> str:
    return ", ".join(str(value) for value in pd.unique(column))


# -- throughput from pytest-benchmark --------------------------------------------------------


@dataclass(frozen=True)
class Benchmarks:
    """pytest-benchmark results: one row per benchmark, and the machine they ran on."""

    rows: pd.DataFrame  # name, mean_s (seconds per call), extra_info (dict)
    machine: str  # e.g. "Intel(R) Xeon(R) ..., 2 cores"; "" if the JSON does not say


def load_benchmarks(path: Path) -> Benchmarks:
    """Read pytest-benchmark's ``--benchmark-json`` output."""
    data = orjson.loads(path.read_bytes())
    try:
        entries = data["benchmarks"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: not pytest-benchmark JSON (no 'benchmarks' list)") from None
    rows = pd.DataFrame(
        [
            {
                "name": entry["name"],
                "mean_s": float(entry["stats"]["mean"]),
                "extra_info": dict(entry.get("extra_info") or {}),
            }
            for entry in entries
        ],
        columns=["name", "mean_s", "extra_info"],
    )
    cpu = data.get("machine_info", {}).get("cpu", {})
    machine = ", ".join(
        part
        for part in (cpu.get("brand_raw", ""), f"{cpu['count']} cores" if "count" in cpu else "")
        if part
    )
    return Benchmarks(rows, machine)


# extra_info keys sorted into columns by how the benchmarks name them (first match wins)
THROUGHPUT_COLUMNS = (
    ("Target", lambda key: "target" in key),  # target, target_vs_loop, meets_target
    ("Rates (/s)", lambda key: key.endswith("_per_s")),  # drawings_per_s, loop_..._per_s
    ("Ratios", lambda key: "speedup" in key or "_vs_" in key),  # against the same-run baseline
    ("Seconds", lambda key: key.endswith("_seconds")),  # e.g. fid_seconds
)
THROUGHPUT_CAPTION = "Throughput (pytest-benchmark); ratios are against baselines run alongside."


def _column_of(key: str) -> str:
    return next((name for name, matches in THROUGHPUT_COLUMNS if matches(key)), "Setup")


def throughput_table(benchmarks: Benchmarks) -> Table:
    """Benchmark, seconds per call, and its extra_info grouped into rates, ratios, seconds,
    targets and the rest (the setup: sizes, batch, device, threads)."""
    order = ("Rates (/s)", "Ratios", "Seconds", "Target", "Setup")
    rows = []
    for row in benchmarks.rows.itertuples(index=False):
        cells: dict[str, list[str]] = {name: [] for name in order}
        for key, value in row.extra_info.items():
            cells[_column_of(key)].append(f"{key} = {format_number(value)}")
        rows.append((row.name, format_number(row.mean_s), *("; ".join(cells[c]) for c in order)))
    return Table(("Benchmark", "Mean (s)", *order), tuple(rows), "lrlllll")


# -- index -----------------------------------------------------------------------------------


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


def budgets_table(results: pd.DataFrame) -> Table:
    """Training budget per model (the floor has none)."""
    models = results[results["model"] != REAL_FLOOR].drop_duplicates("model")
    rows = tuple(
        (str(row.model), str(int(row.steps)), str(int(row.batch_size)))
        for row in models.itertuples(index=False)
    )
    return Table(("Model", "Steps", "Batch size"), rows, "lrr")


def floor_lines(results: pd.DataFrame) -> list[str]:
    """One bullet per category: the real-vs-real FID and KID with their intervals."""
    fid, kid = METRICS[0], METRICS[1]
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
        f"- Device: {_joined(results['device'])}",
        f"- Categories: {', '.join(info.categories)} at {info.size}×{info.size} px",
        f"- Samples: N = {_joined(results['n'])} generated drawings per model and category",
        f"- Seeds: {_joined(results['seed'])}",
        f"- Feature space (FID, KID, precision/recall): {_joined(results['feature_space'])}",
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
        *(f"- {metric.name}: {metric.meaning}." for metric in METRICS),
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
