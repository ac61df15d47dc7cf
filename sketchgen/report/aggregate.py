"""The per-seed results summed up per model x category, and which neighbours differ.

:func:`aggregate`: one row per (model, category) with the number of seeds and, for each metric
of ``sketchgen.evaluation.metrics.METRICS``, the mean (``<metric>``), the standard deviation
over seeds (``<metric>_std``, ddof 1; NaN for one seed) and the minimum (``<metric>_min``);
the budgets averaged over seeds, and the identity columns the seeds share.

:func:`ranking`: per category the models by mean, and for each pair of neighbours Welch's
t-test over seeds (``scipy.stats.ttest_ind(equal_var=False)``): their gap exceeds the seeds'
spread when p < alpha (:data:`ALPHA`). The real-vs-real floor rows are aggregated like any row
but never ranked.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import ttest_ind

from sketchgen.evaluation.metrics import METRICS
from sketchgen.report.results import ID_COLUMNS, REAL_FLOOR, check_results

AGGREGATE_CSV = "aggregate.csv"
AGGREGATE_JSON = "aggregate.json"
ALPHA = 0.05  # Welch's t-test threshold: neighbours differ when p < ALPHA
# budgets that may vary by seed (a seconds budget), averaged; the other identity columns are
# the same for every seed of a model x category (distinct values would be joined by ", ")
AVERAGED = ("steps", "images_seen", "train_seconds")
# ranking's verdicts on a pair of neighbours
DIFFERS, SAME, UNKNOWN = "yes", "no", "unknown"


def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, category) in first-seen order; see the module doc."""
    check_results(results)
    rows = []
    for (model, category), group in results.groupby(["model", "category"], sort=False):
        row = {"model": model, "category": category, "seeds": len(group)}
        row |= {column: group[column].mean() if column in AVERAGED else _shared(group[column])
                for column in ID_COLUMNS if column not in row and column != "seed"}
        for name in METRICS:
            values = group[name].astype(float)
            row |= {name: values.mean(skipna=False), f"{name}_std": values.std(skipna=False),
                    f"{name}_min": values.min(skipna=False)}
        rows.append(row)
    return pd.DataFrame(rows)


def _shared(column: pd.Series):
    distinct = pd.unique(column)
    return distinct[0] if len(distinct) == 1 else ", ".join(str(value) for value in distinct)


def ranking(results: pd.DataFrame, metric: str = "fid", alpha: float = ALPHA) -> pd.DataFrame:
    """Per category (first-seen order) the models best first by mean ``metric``, the floor
    left out. Columns: category, rank, model, seeds, ``<metric>`` (the mean), ``<metric>_std``
    (NaN for one seed), then against the next model down: ``next`` (its name), ``p`` (Welch's
    t-test over seeds) and ``differs`` (DIFFERS if p < alpha, SAME if not, UNKNOWN when either
    has one seed or neither any spread; "" and NaN on the last row)."""
    check_results(results)
    models = results[results["model"] != REAL_FLOOR]
    rows = []
    for category, group in models.groupby("category", sort=False):
        values = {model: seeds[metric].dropna().astype(float)
                  for model, seeds in group.groupby("model", sort=False)}
        order = sorted(values, key=lambda model: values[model].mean(),
                       reverse=METRICS[metric].higher_is_better)
        for rank, (model, below) in enumerate(zip(order, [*order[1:], None], strict=True), 1):
            p = math.nan if below is None else _welch_p(values[model], values[below])
            rows.append({
                "category": category, "rank": rank, "model": model,
                "seeds": len(values[model]), metric: values[model].mean(),
                f"{metric}_std": values[model].std(), "next": below or "", "p": p,
                "differs": "" if below is None else _verdict(p, alpha),
            })
    return pd.DataFrame(rows)


def _welch_p(first, second) -> float:
    if min(len(first), len(second)) < 2:
        return math.nan
    return float(ttest_ind(first, second, equal_var=False).pvalue)


def _verdict(p: float, alpha: float) -> str:
    if math.isnan(p):
        return UNKNOWN
    return DIFFERS if p < alpha else SAME
