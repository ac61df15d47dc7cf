"""The results table of a comparison, the report's source of truth, and its files.

A pandas DataFrame, one row per model x category x seed. Its columns are
:data:`ID_COLUMNS`, then for each metric of ``sketchgen.evaluation.metrics.METRICS`` (by name)
the value and, where a bootstrap interval was computed, ``<metric>_low`` / ``<metric>_high``.
Rows whose model is :data:`REAL_FLOOR` hold the real-vs-real floor: two disjoint real halves
of the same category scored like a model. Every table and the index are rendered from it;
``sketchgen.report.aggregate`` sums it up over seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pandas as pd

from sketchgen.evaluation.metrics import METRICS
from sketchgen.runtime import atomic_write

REAL_FLOOR = "real-vs-real"  # model name of the floor rows: held-out real drawings as "samples"

ID_COLUMNS = (
    "model",  # registry name, or REAL_FLOOR
    "category",  # Quick, Draw! category the samples were scored against
    "n",  # generated (and real reference) drawings per row
    "seed",  # seed of training, sampling and the bootstrap (0 for the floor: drawn once)
    "steps",  # optimiser steps the scored checkpoint was trained for (0 for the floor)
    "batch_size",  # training batch size (0 for the floor)
    "images_seen",  # training drawings the scored checkpoint has seen: steps x batch size
    "train_seconds",  # training wall-clock seconds of the scored checkpoint, validation excluded
    "parameters",  # parameter count per network, e.g. "generator 1,234,567; discriminator 45,678"
    "selected",  # which checkpoint was scored: "last" or "best-valid"
    "device",  # where the model was trained and sampled
    "feature_space",  # name of the features FID/KID/precision/recall were computed in
    "evaluator",  # the evaluator's weights' sha256, first 12 hex digits
)

# identity columns holding text: read back from CSV as "" where empty (the floor's parameters)
TEXT_COLUMNS = ("model", "category", "parameters", "selected", "device", "feature_space",
                "evaluator")

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
    return write_frame(results, out_dir / RESULTS_CSV, out_dir / RESULTS_JSON)


def write_frame(frame: pd.DataFrame, csv_path: Path, json_path: Path) -> tuple[Path, Path]:
    """Write ``frame`` as CSV and as JSON (a list of row objects, NaN as null), atomically."""
    records = [
        {key: _json_value(value) for key, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    data = orjson.dumps(records, option=orjson.OPT_INDENT_2) + b"\n"
    atomic_write(csv_path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.10g"))
    atomic_write(json_path, lambda tmp: tmp.write_bytes(data))
    return csv_path, json_path


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _json_value(value.item())
    return value


def read_results(path: Path) -> pd.DataFrame:
    """Read a ``results.csv`` or ``results.json`` (or an aggregate) back into a frame."""
    if path.suffix == ".json":
        return pd.DataFrame(orjson.loads(path.read_bytes()))
    frame = pd.read_csv(path)
    text = [column for column in TEXT_COLUMNS if column in frame.columns]
    return frame.fillna(dict.fromkeys(text, ""))
