"""Report writers on small hand-made results frames and a hand-made pytest-benchmark JSON."""

from __future__ import annotations

import math

import orjson
import pandas as pd
import pytest
from conftest import imported_by
from scipy.stats import ttest_ind

from sketchgen.report.aggregate import DIFFERS, SAME, UNKNOWN, aggregate, ranking
from sketchgen.report.curves import CURVE_COLUMNS, plot_curves, write_curves
from sketchgen.report.results import ID_COLUMNS, REAL_FLOOR, read_results, write_results
from sketchgen.report.tables import (
    Table,
    format_number,
    latex_escape,
    latex_table,
    load_benchmarks,
    main_caption,
    main_table,
    markdown_table,
    seed_caption,
    seed_table,
    throughput_table,
)
from sketchgen.report.writer import Figure, RunInfo, write_report

FEATURES = "classifier-k8-penultimate"
EVALUATOR = "0123456789ab"


def result_row(model, category, fid, kid=0.0125, recognizability=0.5, steps=40, ci=True,
               seed=7):
    floor = model == REAL_FLOOR
    row = {
        "model": model,
        "category": category,
        "n": 200,
        "seed": 0 if floor else seed,
        "steps": 0 if floor else steps,
        "batch_size": 0 if floor else 16,
        "images_seen": 0 if floor else 16 * steps,
        "train_seconds": 0.0 if floor else steps / 8,
        "parameters": "" if floor else "generator 1,234,567; discriminator 45,678",
        "selected": "last",
        "device": "cpu",
        "feature_space": FEATURES,
        "evaluator": EVALUATOR,
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
    """One seed per model and category."""
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
def seeded() -> pd.DataFrame:
    """Two seeds per model (a seconds budget: the seeds stopped at different steps), the
    floor once."""
    return pd.DataFrame(
        [
            result_row(REAL_FLOOR, "eye", 1.5),
            result_row("dcgan", "eye", 40.0, kid=0.01, steps=40, seed=0),
            result_row("dcgan", "eye", 44.0, kid=0.02, steps=60, seed=1),
            result_row("cgan", "eye", 10.0, steps=50, seed=0),
            result_row("cgan", "eye", 12.0, steps=50, seed=1),
            result_row("sngan", "eye", 11.0, steps=50, seed=0),
            result_row("sngan", "eye", 13.0, steps=50, seed=1),
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
        seeds=(7,),
        select="best-valid",
        set_sizes={"eye": (1000, 200, 400), "mouth": (1200, 200, 400)},
        evaluator=(f"Evaluator sha256: {EVALUATOR}...", "Manifest: eye, mouth; 500 rows per class"),
        overhead="validation took 8.0% of training time (12 s of 150 s)",
        notes=("3 sketches over max_seq_len dropped",),
    )


def curve_rows() -> pd.DataFrame:
    """Two seeds of dcgan on eye validated at steps 0, 10, 20; one of cgan at 0 and 10."""
    rows = [("dcgan", "eye", seed, step, step * (1 + seed) / 10, 200 / (1 + step) + seed, 0.1,
             0.2) for seed in (0, 1) for step in (0, 10, 20)]
    rows += [("cgan", "eye", 0, step, step / 5, 150 / (1 + step), 0.3, 0.4) for step in (0, 10)]
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


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


@pytest.mark.parametrize("column", ["recall", *ID_COLUMNS])
def test_missing_identity_or_metric_column_is_rejected(results, tmp_path, column):
    with pytest.raises(ValueError, match=column):
        write_results(results.drop(columns=column), tmp_path)


def test_seed_table_markdown_is_exact(results):
    expected = [
        "| Model | Category | Seed | N | FID ↓ | KID ↓ | Precision ↑ | Recall ↑ "
        "| Recognizability ↑ | Blank ↓ | Duplicates ↓ |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| real-vs-real | eye | 0 | 200 | 1.50 [1.00, 2.80] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.875 | 0.000 | 0.062 |",
        "| dcgan | eye | 7 | 200 | 41.2 [40.7, 42.5] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.500 | 0.000 | 0.062 |",
        "| cgan | eye | 7 | 200 | 30.0 | 0.0125 | 0.250 | 0.125 | – | 0.000 | 0.062 |",
        "| real-vs-real | mouth | 0 | 200 | 2.00 [1.50, 3.30] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.750 | 0.000 | 0.062 |",
        "| dcgan | mouth | 7 | 200 | 50.0 [49.5, 51.3] | 0.0125 [0.0100, 0.0200] "
        "| 0.250 | 0.125 | 0.500 | 0.000 | 0.062 |",
        "",
    ]
    assert markdown_table(seed_table(results)) == "\n".join(expected)


def test_seed_table_latex_is_booktabs_with_escaped_cells(results, info):
    tex = latex_table(seed_table(results), seed_caption(results, info.ci_level))
    lines = tex.splitlines()
    assert lines[:5] == [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{One row per seed. Features: classifier-k8-penultimate (evaluator sha256 "
        r"0123456789ab); N = 200 per row; checkpoint: last; device cpu; "
        r"90\% bootstrap intervals in brackets.}",
        r"\begin{tabular}{llrrrrrrrrr}",
        r"\toprule",
    ]
    assert lines[5] == (
        r"Model & Category & Seed & N & FID $\downarrow$ & KID $\downarrow$ & "
        r"Precision $\uparrow$ & Recall $\uparrow$ & Recognizability $\uparrow$ & "
        r"Blank $\downarrow$ & Duplicates $\downarrow$ \\"
    )
    assert lines[6] == r"\midrule"
    assert lines[9] == (
        r"cgan & eye & 7 & 200 & 30.0 & 0.0125 & 0.250 & 0.125 & -- & 0.000 & 0.062 \\"
    )
    assert lines[-3:] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    assert len(lines) == 5 + 1 + 1 + len(results) + 3
    assert tex.endswith("\n")


def test_aggregate_gives_mean_std_min_and_seed_count_per_model_and_category(seeded):
    rows = aggregate(seeded).set_index("model")
    assert list(rows.index) == [REAL_FLOOR, "dcgan", "cgan", "sngan"]  # first-seen order
    dcgan = rows.loc["dcgan"]
    assert dcgan["seeds"] == 2
    assert dcgan["fid"] == 42.0  # (40 + 44) / 2
    assert dcgan["fid_std"] == pytest.approx(math.sqrt(8))  # ((-2)² + 2²) / (2 - 1)
    assert dcgan["fid_min"] == 40.0
    assert dcgan["kid"] == pytest.approx(0.015)
    assert dcgan["kid_std"] == pytest.approx(0.005 * math.sqrt(2))
    assert (dcgan["steps"], dcgan["images_seen"], dcgan["train_seconds"]) == (50, 800, 6.25)
    assert dcgan["parameters"] == "generator 1,234,567; discriminator 45,678"
    assert dcgan["evaluator"] == EVALUATOR
    floor = rows.loc[REAL_FLOOR]
    assert floor["seeds"] == 1
    assert (floor["fid"], floor["fid_min"]) == (1.5, 1.5)
    assert math.isnan(floor["fid_std"])


def test_ranking_marks_a_gap_beyond_the_seeds_spread_and_not_a_small_one(seeded):
    ranked = ranking(seeded)
    assert list(ranked["model"]) == ["cgan", "sngan", "dcgan"]  # the floor is never ranked
    assert list(ranked["rank"]) == [1, 2, 3]
    assert list(ranked["next"]) == ["sngan", "dcgan", ""]
    # Welch with two seeds a side of equal variance 2: df = 2, and the two-sided p of t on 2
    # degrees of freedom is 1 - |t| / sqrt(t² + 2).
    # cgan [10, 12] vs sngan [11, 13]: t = 1 / sqrt(2 / 2 + 2 / 2) = 0.707 -> p = 0.553
    # sngan [11, 13] vs dcgan [40, 44] (variance 8): a gap of 30 -> p far below 0.05
    small = 1 - (1 / math.sqrt(2)) / math.sqrt(0.5 + 2)
    assert ranked["p"].iloc[0] == pytest.approx(small)
    assert ranked["p"].iloc[0] == pytest.approx(
        ttest_ind([10.0, 12.0], [11.0, 13.0], equal_var=False).pvalue)
    assert ranked["p"].iloc[1] == pytest.approx(
        ttest_ind([11.0, 13.0], [40.0, 44.0], equal_var=False).pvalue)
    assert ranked["p"].iloc[1] < 0.05
    assert list(ranked["differs"]) == [SAME, DIFFERS, ""]
    assert ranked["fid"].iloc[0] == 11.0
    assert ranked["fid_std"].iloc[0] == pytest.approx(math.sqrt(2))


def test_ranking_with_one_seed_cannot_say(results):
    ranked = ranking(results)
    assert list(ranked["model"]) == ["cgan", "dcgan", "dcgan"]
    assert list(ranked["differs"]) == [UNKNOWN, "", ""]
    assert math.isnan(ranked["p"].iloc[0])


def test_ranking_of_a_higher_is_better_metric_puts_the_highest_first(seeded):
    seeded["precision"] = [1.0, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8]  # the floor's 1.0 is not ranked
    assert list(ranking(seeded, "precision")["model"]) == ["sngan", "cgan", "dcgan"]


def test_main_table_shows_mean_and_std_and_the_caption_the_seed_count(seeded):
    aggregated = aggregate(seeded)
    table = main_table(aggregated)
    assert table.header[:4] == ("Model", "Category", "N", "FID ↓")
    assert table.rows[0][:5] == ("real-vs-real", "eye", "200", "1.50", "0.0125")  # one draw
    assert table.rows[1][:5] == ("dcgan", "eye", "200", "42.0 ± 2.83", "0.0150 ± 0.00707")
    assert table.rows[2][3] == "11.0 ± 1.41"
    assert table.rows[2][5] == "0.250 ± 0.000"  # precision: fixed decimals for both
    caption = main_caption(aggregated)
    assert caption.startswith("Mean ± standard deviation over 2 seeds (the real-vs-real floor "
                              "is drawn once). Features: classifier-k8-penultimate (evaluator "
                              "sha256 0123456789ab); N = 200 per row; checkpoint: last;")
    tex = latex_table(table, caption)
    assert r"\caption{Mean $\pm$ standard deviation over 2 seeds" in tex
    assert r"dcgan & eye & 200 & 42.0 $\pm$ 2.83 & 0.0150 $\pm$ 0.00707" in tex


def test_main_table_of_one_seed_shows_values_alone(results):
    aggregated = aggregate(results)
    assert main_table(aggregated).rows[1][:4] == ("dcgan", "eye", "200", "41.2")
    assert main_caption(aggregated).startswith(
        "One seed per model and category: values without spread (the real-vs-real floor")


def test_curves_csv_holds_the_rows_given_and_the_figure_is_drawn(tmp_path):
    frame = curve_rows()
    path = write_curves(frame.assign(extra="dropped"), tmp_path)
    assert path == tmp_path / "curves.csv"
    written = pd.read_csv(path)
    assert list(written.columns) == list(CURVE_COLUMNS)
    pd.testing.assert_frame_equal(written, frame, check_dtype=False)
    figure = plot_curves(frame, "eye", tmp_path / "curves" / "eye.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="'mouth'"):
        plot_curves(frame, "mouth", tmp_path / "mouth.png")
    with pytest.raises(ValueError, match="train_seconds"):
        write_curves(frame.drop(columns="train_seconds"), tmp_path)


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

    written = write_report(results, tmp_path, info, figures, benchmarks, curves=curve_rows())

    names = sorted(str(path.relative_to(tmp_path)) for path in written)
    assert names == [
        "README.md",
        "aggregate.csv",
        "aggregate.json",
        "curves.csv",
        "curves/eye.png",
        "ranking.md",
        "ranking.tex",
        "results.csv",
        "results.json",
        "results.md",
        "results.tex",
        "seeds.md",
        "seeds.tex",
        "throughput.md",
        "throughput.tex",
    ]
    assert all(path.is_file() for path in written)
    index = (tmp_path / "README.md").read_text(encoding="utf-8")
    for fact in [
        "# Comparison: tiny",
        "**Tiny CPU budget.**",
        "- Device: cpu",
        "- Categories: eye, mouth at 28×28 px",
        "- Samples: N = 200 generated drawings per model and category",
        "- Seeds: 7 (each model × category × seed is its own run;",
        "- Checkpoint selection: best-valid: each run's checkpoint with the lowest validation FID",
        "- Evaluation overhead: validation took 8.0% of training time (12 s of 150 s)",
        f"- Feature space (FID, KID, precision/recall): {FEATURES}",
        "- Classifier: width-8 CNN, test accuracy 0.812",
        f"- Evaluator sha256: {EVALUATOR}...\n- Manifest: eye, mouth; 500 rows per class\n",
        "- Wall time: 1.5 min",
        "- 3 sketches over max_seq_len dropped",
        "| Category | Train | Valid | Test |\n|:---|---:|---:|---:|\n| eye | 1,000 | 200 | 400 |\n"
        "| mouth | 1,200 | 200 | 400 |\n",
        "| dcgan | eye | 1 | 40 | 16 | 640 | 5.00 | generator 1,234,567; discriminator 45,678 |",
        "| cgan | eye | 1 | 60 | 16 | 960 | 7.50 |",
        "One seed per model and category: values without spread",
        "| dcgan | eye | 200 | 41.2 | 0.0125 |",
        "- Recognizability: share of generated drawings the classifier assigns to the intended",
        "- real-vs-real: N other held-out real drawings scored like a model's",
        "Welch's t-test over seeds (unequal variances); the gap exceeds the seeds' spread "
        "(Differs: yes) when p < 0.05",
        "| eye | 1 | cgan | 1 | 30.0 | dcgan | – | unknown |",
        "| dcgan | eye | 7 | 200 | 41.2 [40.7, 42.5] |",
        "- eye: FID 1.50 [1.00, 2.80], KID 0.0125 [0.0100, 0.0200]",
        "- mouth: FID 2.00 [1.50, 3.30]",
        "## Learning curves\n\nEvery validation of every run: [curves.csv](curves.csv).\n\n"
        "![Learning curves: eye](curves/eye.png)\n",
        "From pytest-benchmark on Test CPU, 2 cores; ratios are against baselines",
        "| test_render_vs_per_point_loop[28-1000] | 0.00250 | drawings_per_s = 102,400;",
        "## Samples\n\n| Model | eye | mouth |\n|:---|:---|:---|\n"
        "| dcgan | ![dcgan, eye](grids/dcgan-eye.png) |  |\n"
        "| cgan |  | ![cgan, mouth](grids/cgan-mouth.png) |\n",
        "## Figures\n\n### Classifier confusion\n\n![Classifier confusion](confusion.png)\n",
        "[results.csv](results.csv)",
        "[aggregate.csv](aggregate.csv)",
        "[throughput.tex](throughput.tex)",
    ]:
        assert fact in index
    assert index.count("| real-vs-real |") == 4  # floor rows in the main and per-seed tables


def test_write_report_of_several_seeds_writes_the_aggregate_and_the_ranking(seeded, info,
                                                                           tmp_path):
    write_report(seeded, tmp_path, info)
    aggregated = read_results(tmp_path / "aggregate.csv")
    assert list(aggregated["seeds"]) == [1, 2, 2, 2]
    assert list(aggregated["fid"]) == [1.5, 42.0, 11.0, 12.0]
    assert orjson.loads((tmp_path / "aggregate.json").read_bytes())[0]["fid_std"] is None
    ranking_md = (tmp_path / "ranking.md").read_text(encoding="utf-8")
    assert "| eye | 1 | cgan | 2 | 11.0 ± 1.41 | sngan | 0.553 | no |" in ranking_md
    assert "| eye | 3 | dcgan | 2 | 42.0 ± 2.83 |  | – |  |" in ranking_md
    assert r"\caption{Models by mean FID over seeds" in (tmp_path / "ranking.tex").read_text()
    index = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "Mean ± standard deviation over 2 seeds" in index
    assert "## Learning curves" not in index


def test_write_report_refuses_to_link_a_missing_figure(results, info, tmp_path):
    with pytest.raises(ValueError, match="missing.png"):
        write_report(results, tmp_path, info, [Figure("missing.png", "gone")])
    assert not (tmp_path / "README.md").exists()


def test_the_report_imports_no_torch():
    """Writing a report from a results table needs no deep-learning stack."""
    assert imported_by("import sketchgen.report.figures, sketchgen.report.writer",
                       ("torch",)) == []


def test_write_report_adds_the_calibration_csv_figure_and_section(results, info, tmp_path):
    calibration = pd.DataFrame(
        [("none", 0.0, 1.5, 0.001, 0.75, 0.75)]
        + [("blur", sigma, 2.0 + 10 * sigma, 0.01 * sigma, 0.5, 0.5) for sigma in (0.5, 1, 2)],
        columns=["degradation", "strength", "fid", "kid", "precision", "recall"],
    )
    written = write_report(results, tmp_path, info, calibration=calibration)
    assert {tmp_path / "calibration.csv", tmp_path / "calibration.png"} <= set(written)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "calibration.csv"), calibration)
    assert (tmp_path / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    index = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert f"under standard degradations, in {FEATURES} at the report's N" in index
    assert "| none (real vs real) | – | 1.50 |" in index
    assert "| blur (σ, px) | 1.00 | 12.0 |" in index
    assert "![Calibration](calibration.png)" in index
