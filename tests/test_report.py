"""Report writers on small hand-made results frames and a hand-made pytest-benchmark JSON."""

from __future__ import annotations

import math

import orjson
import pandas as pd
import pytest
from conftest import imported_by

from sketchgen.report.results import REAL_FLOOR, read_results, write_results
from sketchgen.report.tables import (
    Table,
    format_number,
    latex_escape,
    latex_table,
    load_benchmarks,
    main_table,
    markdown_table,
    table_caption,
    throughput_table,
)
from sketchgen.report.writer import Figure, RunInfo, write_report

FEATURES = "classifier-k8-penultimate"


def result_row(model, category, fid, kid=0.0125, recognizability=0.5, steps=40, ci=True):
    row = {
        "model": model,
        "category": category,
        "n": 200,
        "seed": 7,
        "steps": 0 if model == REAL_FLOOR else steps,
        "batch_size": 0 if model == REAL_FLOOR else 16,
        "device": "cpu",
        "feature_space": FEATURES,
        "fid": fid,
        "kid": kid,
        "precision": 0.25,
        "recall": 0.125,
        "recognizability": recognizability,
        "blank": 0.0,
        "duplicates": 0.0625,
    }
    if ci:
        row |= {"fid_low": fid - 0.5, "fid_high": fid + 1.3, "kid_low": 0.01, "kid_high": 0.02}
    return row


@pytest.fixture
def results() -> pd.DataFrame:
    return pd.DataFrame(
        [
            result_row("dcgan", "eye", 41.234),
            result_row(REAL_FLOOR, "eye", 1.5, recognizability=0.875),
            result_row("cgan", "eye", 30.0, recognizability=float("nan"), ci=False, steps=60),
            result_row(REAL_FLOOR, "mouth", 2.0, recognizability=0.75),
            result_row("dcgan", "mouth", 50.0),
        ]
    )


@pytest.fixture
def info() -> RunInfo:
    return RunInfo(
        name="tiny",
        label="Tiny CPU budget",
        categories=("eye", "mouth"),
        size=28,
        classifier="width-8 CNN, test accuracy 0.812",
        ci_level=0.9,
        elapsed_s=90.0,
        notes=("3 sketches over max_seq_len dropped",),
    )


BENCHMARKS = {
    "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}},
    "benchmarks": [
        {
            "name": "test_render_vs_per_point_loop[28-1000]",
            "group": None,
            "stats": {"mean": 0.0025, "ops": 400.0},
            "extra_info": {
                "size": 28,
                "drawings_per_s": 102400.0,
                "loop_drawings_per_s": 31507.7,
                "speedup_vs_loop": 3.25,
                "target": 1.5,
                "meets_target": True,
            },
        },
        {
            "name": "test_fid_vs_scipy_sqrtm",
            "group": "metrics",
            "stats": {"mean": 1.5, "ops": 0.6666666},
            "extra_info": {"fid_seconds": 0.75, "streaming_vs_render_one_core": 0.9},
        },
        {"name": "test_bare", "stats": {"mean": 2.0, "ops": 0.5}},
    ],
}


def test_results_csv_and_json_hold_the_same_rows_with_nan_as_null(results, tmp_path):
    csv_path, json_path = write_results(results, tmp_path)
    records = orjson.loads(json_path.read_bytes())
    assert [record["model"] for record in records] == list(results["model"])
    assert records[2]["recognizability"] is None
    assert records[2]["fid_low"] is None  # cgan row has no interval
    from_csv, from_json = read_results(csv_path), read_results(json_path)
    assert list(from_csv.columns) == list(results.columns)
    pd.testing.assert_frame_equal(from_csv, results, check_dtype=False)
    pd.testing.assert_frame_equal(from_json, results, check_dtype=False)


def test_missing_metric_column_is_rejected(results, tmp_path):
    with pytest.raises(ValueError, match="recall"):
        write_results(results.drop(columns="recall"), tmp_path)


def test_main_table_markdown_is_exact(results):
    expected = [
        "| Model | Category | N | FID ↓ | KID ↓ | Precision ↑ | Recall ↑ "
        "| Recognizability ↑ | Blank ↓ | Duplicates ↓ |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| real-vs-real | eye | 200 | 1.50 [1.00, 2.80] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.875 | 0.000 | 0.062 |",
        "| dcgan | eye | 200 | 41.2 [40.7, 42.5] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.500 | 0.000 | 0.062 |",
        "| cgan | eye | 200 | 30.0 | 0.0125 | 0.250 | 0.125 | – | 0.000 | 0.062 |",
        "| real-vs-real | mouth | 200 | 2.00 [1.50, 3.30] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.750 | 0.000 | 0.062 |",
        "| dcgan | mouth | 200 | 50.0 [49.5, 51.3] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.500 | 0.000 | 0.062 |",
        "",
    ]
    assert markdown_table(main_table(results)) == "\n".join(expected)


def test_main_table_latex_is_booktabs_with_escaped_cells(results, info):
    tex = latex_table(
        main_table(results), table_caption(results, info.ci_level)
    )
    lines = tex.splitlines()
    assert lines[:5] == [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{Features: classifier-k8-penultimate; N = 200 per row; seed 7; device cpu; "
        r"90\% bootstrap intervals in brackets.}",
        r"\begin{tabular}{llrrrrrrrr}",
        r"\toprule",
    ]
    assert lines[5] == (
        r"Model & Category & N & FID $\downarrow$ & KID $\downarrow$ & "
        r"Precision $\uparrow$ & Recall $\uparrow$ & Recognizability $\uparrow$ & "
        r"Blank $\downarrow$ & Duplicates $\downarrow$ \\"
    )
    assert lines[6] == r"\midrule"
    assert lines[9] == r"cgan & eye & 200 & 30.0 & 0.0125 & 0.250 & 0.125 & -- & 0.000 & 0.062 \\"
    assert lines[-3:] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    assert len(lines) == 5 + 1 + 1 + len(results) + 3
    assert tex.endswith("\n")


def test_latex_escape_handles_specials():
    assert latex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"


def test_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="do not agree"):
        Table(("a", "b"), (("1",),), "lr")


def test_throughput_sorts_extra_info_into_rates_ratios_seconds_targets_setup(tmp_path):
    path = tmp_path / "benchmarks.json"
    path.write_bytes(orjson.dumps(BENCHMARKS))
    benchmarks = load_benchmarks(path)
    assert benchmarks.machine == "Test CPU, 2 cores"
    table = throughput_table(benchmarks)
    assert table.header == (
        "Benchmark", "Mean (s)", "Rates (/s)", "Ratios", "Seconds", "Target", "Setup"
    )
    assert table.rows == (
        (
            "test_render_vs_per_point_loop[28-1000]",
            "0.00250",
            "drawings_per_s = 102,400; loop_drawings_per_s = 31,508",
            "speedup_vs_loop = 3.25",
            "",
            "target = 1.50; meets_target = True",
            "size = 28",
        ),
        (
            "test_fid_vs_scipy_sqrtm",
            "1.50",
            "",
            "streaming_vs_render_one_core = 0.900",
            "fid_seconds = 0.750",
            "",
            "",
        ),
        ("test_bare", "2.00", "", "", "", "", ""),
    )


def test_benchmark_json_without_benchmarks_list_is_rejected(tmp_path):
    path = tmp_path / "other.json"
    path.write_bytes(orjson.dumps({"results": []}))
    with pytest.raises(ValueError, match="not pytest-benchmark JSON"):
        load_benchmarks(path)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (123456.7, "123,457"),
        (12, "12"),
        (1234567, "1,234,567"),
        (12.0, "12.0"),
        (3.14159, "3.14"),
        (-0.012345, "-0.0123"),
        (0.0025, "0.00250"),
        (2e-5, "2.00e-05"),
        (0.0, "0"),
        (math.inf, "–"),
        (math.nan, "–"),
        (None, "–"),
        (True, "True"),
        ("cpu", "cpu"),
        ([1, 2], "[1, 2]"),
    ],
)
def test_format_number_defaults_to_three_significant_digits(value, text):
    assert format_number(value) == text


def test_write_report_writes_every_file_and_an_index_that_links_them(results, info, tmp_path):
    (tmp_path / "grids").mkdir()
    for name in ("grids/dcgan-eye.png", "grids/cgan-mouth.png", "confusion.png"):
        (tmp_path / name).write_bytes(b"png")
    benchmarks = tmp_path / "benchmarks.json"
    benchmarks.write_bytes(orjson.dumps(BENCHMARKS))
    figures = [
        Figure("confusion.png", "Classifier confusion"),
        Figure("grids/dcgan-eye.png", "dcgan, eye", "dcgan", "eye"),
        Figure("grids/cgan-mouth.png", "cgan, mouth", "cgan", "mouth"),
    ]

    written = write_report(results, tmp_path, info, figures, benchmarks)

    names = sorted(path.name for path in written)
    assert names == [
        "README.md",
        "results.csv",
        "results.json",
        "results.md",
        "results.tex",
        "throughput.md",
        "throughput.tex",
    ]
    index = (tmp_path / "README.md").read_text(encoding="utf-8")
    for fact in [
        "# Comparison: tiny",
        "**Tiny CPU budget.**",
        "- Device: cpu",
        "- Categories: eye, mouth at 28×28 px",
        "- Samples: N = 200 generated drawings per model and category",
        "- Seeds: 7",
        f"- Feature space (FID, KID, precision/recall): {FEATURES}",
        "- Classifier: width-8 CNN, test accuracy 0.812",
        "- Wall time: 1.5 min",
        "- 3 sketches over max_seq_len dropped",
        "- Recognizability: share of generated drawings the classifier assigns to the intended",
        "- real-vs-real: N other held-out real drawings scored like a model's",
        "| dcgan | 40 | 16 |\n| cgan | 60 | 16 |\n",
        "- eye: FID 1.50 [1.00, 2.80], KID 0.0125 [0.0100, 0.0200]",
        "- mouth: FID 2.00 [1.50, 3.30]",
        "From pytest-benchmark on Test CPU, 2 cores; ratios are against baselines",
        "| test_render_vs_per_point_loop[28-1000] | 0.00250 | drawings_per_s = 102,400;",
        "## Samples\n\n| Model | eye | mouth |\n|:---|:---|:---|\n"
        "| dcgan | ![dcgan, eye](grids/dcgan-eye.png) |  |\n"
        "| cgan |  | ![cgan, mouth](grids/cgan-mouth.png) |\n",
        "## Figures\n\n### Classifier confusion\n\n![Classifier confusion](confusion.png)\n",
        "[results.csv](results.csv)",
        "[throughput.tex](throughput.tex)",
    ]:
        assert fact in index
    assert index.count("| real-vs-real |") == 2  # floor rows in the main table


def test_write_report_refuses_to_link_a_missing_figure(results, info, tmp_path):
    with pytest.raises(ValueError, match="missing.png"):
        write_report(results, tmp_path, info, [Figure("missing.png", "gone")])
    assert not (tmp_path / "README.md").exists()


def test_the_report_imports_no_torch():
    """Writing a report from a results table needs no deep-learning stack."""
    assert imported_by("import sketchgen.report.figures, sketchgen.report.writer",
                       ("torch",)) == []
