"""The report's tables, written by hand (no ``tabulate``, no ``Styler``/jinja2) so the output
only depends on this module: cells formatted once, each :class:`Table` rendered identically to
Markdown pipes and LaTeX ``booktabs`` rules.

The main table prints every metric of ``sketchgen.evaluation.metrics.METRICS`` as that
registry titles and rounds it, as mean ± std over seeds (``sketchgen.report.aggregate``); the
per-seed table as value and bootstrap interval; the ranking, each model against the next.

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

from sketchgen.evaluation.metrics import METRICS, Metric
from sketchgen.report.results import REAL_FLOOR, check_results

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
    value = format_number(row[metric.name], metric.decimals)
    low, high = row.get(f"{metric.name}_low"), row.get(f"{metric.name}_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return value
    low, high = (format_number(bound, metric.decimals) for bound in (low, high))
    return f"{value} [{low}, {high}]"


def heading(metric: Metric) -> str:
    """The metric's column header: its title and which way is better."""
    return f"{metric.title} {'↑' if metric.higher_is_better else '↓'}"


# -- tables of the results -------------------------------------------------------------------


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


def spread_cell(row: pd.Series, metric: Metric) -> str:
    """``mean ± std`` of an aggregate row (``sketchgen.report.aggregate``), or the mean alone
    where the std is NaN (one seed)."""
    value = format_number(row[metric.name], metric.decimals)
    spread = row[f"{metric.name}_std"]
    if pd.isna(spread) or pd.isna(row[metric.name]):
        return value
    return f"{value} ± {format_number(spread, metric.decimals)}"


def _floor_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by category in first-seen order, the floor first in each, else as they came."""
    category_order = {category: i for i, category in enumerate(pd.unique(frame["category"]))}
    return frame.assign(
        _category=frame["category"].map(category_order),
        _floor_last=frame["model"] != REAL_FLOOR,
    ).sort_values(["_category", "_floor_last"], kind="stable")


def main_table(aggregated: pd.DataFrame) -> Table:
    """One line per model x category of an aggregate frame: each metric as mean ± std."""
    rows = tuple(
        (str(row["model"]), str(row["category"]), str(row["n"]))
        + tuple(spread_cell(row, metric) for metric in METRICS.values())
        for _, row in _floor_first(aggregated).iterrows()
    )
    header = ("Model", "Category", "N", *(heading(metric) for metric in METRICS.values()))
    return Table(header, rows, "llr" + "r" * len(METRICS))


def seed_table(results: pd.DataFrame) -> Table:
    """One line per results row (model x category x seed), bootstrap intervals in brackets."""
    check_results(results)
    rows = tuple(
        (str(row["model"]), str(row["category"]), str(int(row["seed"])), str(int(row["n"])))
        + tuple(metric_cell(row, metric) for metric in METRICS.values())
        for _, row in _floor_first(results).iterrows()
    )
    header = ("Model", "Category", "Seed", "N", *(heading(metric) for metric in METRICS.values()))
    return Table(header, rows, "llrr" + "r" * len(METRICS))


def budgets_table(aggregated: pd.DataFrame) -> Table:
    """Per model x category the budget spent (means over seeds) and the parameter counts;
    the floor has none."""
    models = aggregated[aggregated["model"] != REAL_FLOOR]
    rows = tuple(
        (str(row.model), str(row.category), str(row.seeds), _count(row.steps),
         str(row.batch_size), _count(row.images_seen), format_number(row.train_seconds),
         str(row.parameters))
        for row in models.itertuples(index=False)
    )
    header = ("Model", "Category", "Seeds", "Steps", "Batch size", "Images seen",
              "Training s", "Parameters")
    return Table(header, rows, "llrrrrrl")


def _count(value) -> str:
    """A mean of counts: exact when whole, else to 3 significant digits."""
    value = float(value)
    return format_number(int(value) if value.is_integer() else value)


def ranking_table(ranked: pd.DataFrame, metric: str = "fid") -> Table:
    """A ranking frame (``sketchgen.report.aggregate.ranking``) as a table: each model's
    mean ± std, and Welch's p-value and verdict against the next model down."""
    shown = METRICS[metric]
    rows = tuple(
        (str(row["category"]), str(row["rank"]), str(row["model"]), str(row["seeds"]),
         spread_cell(row, shown), str(row["next"]), format_number(row["p"]),
         str(row["differs"]))
        for _, row in ranked.iterrows()
    )
    header = ("Category", "Rank", "Model", "Seeds", heading(shown), "Next", "p (Welch)",
              "Differs")
    return Table(header, rows, "lrlrrlrl")


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
    "±": r"$\pm$",
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


def main_caption(aggregated: pd.DataFrame) -> str:
    """The main table's caption: the seed count, the feature space with the evaluator's
    sha256, N, the checkpoint rule and the device."""
    models = aggregated[aggregated["model"] != REAL_FLOOR]
    seeds = sorted(pd.unique(models["seeds"])) or [1]
    if seeds == [1]:
        spread = "One seed per model and category: values without spread"
    else:
        counts = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        spread = f"Mean ± standard deviation over {counts} seeds"
    if (aggregated["model"] == REAL_FLOOR).any():
        spread += " (the real-vs-real floor is drawn once)"
    return f"{spread}. {_setup(aggregated)}."


def seed_caption(results: pd.DataFrame, ci_level: float) -> str:
    """The per-seed table's caption: the setup and the interval level."""
    return (f"One row per seed. {_setup(results)}; "
            f"{ci_level:.0%} bootstrap intervals in brackets.")


def _setup(frame: pd.DataFrame) -> str:
    return (f"Features: {joined(frame['feature_space'])} (evaluator sha256 "
            f"{joined(frame['evaluator'])}); N = {joined(frame['n'])} per row; checkpoint: "
            f"{joined(frame['selected'])}; device {joined(frame['device'])}")


def ranking_caption(metric: str, alpha: float) -> str:
    """What the ranking shows and which test decides it."""
    return (f"Models by mean {METRICS[metric].title} over seeds, best first, per category. "
            "Against the next model down: Welch's t-test over seeds (unequal variances); "
            f"the gap exceeds the seeds' spread (Differs: yes) when p < {alpha:g}, "
            "unknown when either model has a single seed.")


def joined(column: pd.Series) -> str:
    """A column's distinct values in first-seen order, as one comma-separated cell (empty
    ones, such as the floor's selection rule, left out)."""
    return ", ".join(str(value) for value in pd.unique(column) if str(value) != "")


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

