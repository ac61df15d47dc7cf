"""The results table of a comparison, the report's source of truth, and its files.

A pandas DataFrame, one row per model x category x feature space. Its columns are
:data:`ID_COLUMNS`, then for each metric of ``sketchgen.evaluation.metrics.METRICS`` (by name)
the value and, where a bootstrap interval was computed, ``<metric>_low`` / ``<metric>_high``.
Rows whose model is :data:`REAL_FLOOR` hold the real-vs-real floor: two disjoint real halves
of the same category scored like a model. Every table and the index are rendered from it.
"""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pandas as pd

from sketchgen.evaluation.metrics import METRICS

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

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"


def check_results(results: pd.DataFrame) -> None:
    """Raise ValueError unless every identity and metric column is present."""
    required = [*ID_COLUMNS, *METRICS]
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
