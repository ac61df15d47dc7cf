"""`sketchgen compare` end to end on a tiny config with real mirror data, and bad configs.

The comparison runs once per session (module fixture): two categories, an unconditional
bitmap GAN (trained once per category) and a class-conditional Sketch-RNN (strokes, trained
once), a few steps each. Assertions cover what must hold at any budget; model quality at a
few steps is not one of them.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pandas as pd
import pytest
from PIL import Image

from sketchgen.cli import main
from sketchgen.comparison.config import WORK, config_from_dict, load_config
from sketchgen.comparison.plan import plan_runs
from sketchgen.comparison.real import load_real
from sketchgen.comparison.run import run_comparison
from sketchgen.errors import UsageError
from sketchgen.report.results import REAL_FLOOR, read_results
from sketchgen.training.config import TrainConfig

CATEGORIES = ["eye", "mouth"]
N = 70  # more than the 64 distinct drawings the calibration's mode collapse keeps
STEPS = {"dcgan": 3, "sketch-rnn": 2}
TINY_SKETCH_RNN = {"mode": "class", "enc_rnn_size": 16, "dec_rnn_size": 32, "z_size": 8,
                   "class_embedding_size": 8, "num_mixture": 3, "sample_max_len": 60}

BENCHMARKS = {"benchmarks": [{"name": "test_fid_eigh", "stats": {"mean": 0.5, "ops": 2.0},
                              "extra_info": {"speedup_vs_scipy_sqrtm": 4.0}}]}


def tiny_config(out, **changes) -> dict:
    config = {
        "name": "tiny",
        "label": "Tiny test budget",
        "categories": CATEGORIES,
        "per_class": 160,
        "n_samples": N,
        "eval_samples": 30,
        "seed": 0,
        "device": "cpu",
        "bootstrap": 10,
        "out": str(out),
        "classifier": {"width": 8, "max_epochs": 2},
        "models": [
            {"model": "dcgan", "steps": STEPS["dcgan"], "batch_size": 8,
             "options": {"width": 8}},
            {"model": "sketch-rnn", "steps": STEPS["sketch-rnn"], "batch_size": 8,
             "options": TINY_SKETCH_RNN},
        ],
    }
    return config | changes


def write_toml(path, config: dict) -> str:
    """The few TOML shapes these configs need: scalars, string lists, tables, [[models]]."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return orjson.dumps(v).decode()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items() if k not in ("models", "classifier")]
    if "classifier" in config:
        lines += ["[classifier]"] + [f"{k} = {value(v)}" for k, v in config["classifier"].items()]
    for model in config.get("models", []):
        lines += ["[[models]]"] + [f"{k} = {value(v)}" for k, v in model.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run the comparison through the CLI once; return its report folder and results."""
    root = tmp_path_factory.mktemp("compare")
    benchmarks = root / "benchmarks.json"
    benchmarks.write_bytes(orjson.dumps(BENCHMARKS))
    config = write_toml(root / "tiny.toml", tiny_config(root / "report"))
    assert main(["compare", config, "--benchmarks", str(benchmarks)]) == 0
    out = root / "report"
    return out, read_results(out / "results.csv"), config


def test_every_report_file_is_written(finished):
    out, _, _ = finished
    expected = ["README.md", "results.csv", "results.json", "results.md", "results.tex",
                "throughput.md", "throughput.tex", "confusion.png",
                "grids/real-vs-real-eye.png", "grids/real-vs-real-mouth.png",
                "grids/dcgan-eye.png", "grids/dcgan-mouth.png",
                "grids/sketch-rnn-eye.png", "grids/sketch-rnn-mouth.png",
                "training/dcgan-eye/losses.png", "training/dcgan-mouth/losses.png",
                "training/sketch-rnn/losses.png", "aggregate.csv", "aggregate.json",
                "seeds.md", "seeds.tex", "ranking.md", "ranking.tex", "curves.csv",
                "curves/eye.png", "curves/mouth.png", "calibration.csv", "calibration.png"]
    assert [name for name in expected if not (out / name).is_file()] == []


def test_no_report_file_is_git_ignored(finished):
    """A committed report must carry every file its index links."""
    out, _, _ = finished
    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    files = [f"reports/tiny/{path.relative_to(out)}" for path in out.rglob("*")
             if path.is_file() and WORK not in path.parts]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=repo,
                             input="\n".join(files), capture_output=True, text=True).stdout
    assert len(files) > 10 and ignored == ""


def test_results_hold_one_row_per_model_and_category_with_sane_values(finished):
    _, results, _ = finished
    assert sorted(zip(results["model"], results["category"], strict=True)) == sorted(
        (model, category) for model in (REAL_FLOOR, "dcgan", "sketch-rnn")
        for category in CATEGORIES)
    assert set(results["n"]) == {N}
    assert set(results["seed"]) == {0}
    assert set(results["feature_space"]) == {"qd-cnn-k8/dense"}
    assert all(device.startswith("cpu") for device in results["device"])
    budget = dict(zip(results["model"], results["steps"], strict=True))
    assert budget == {REAL_FLOOR: 0, **STEPS}
    for column in ("fid", "fid_low", "fid_high", "kid", "kid_low", "kid_high"):
        assert results[column].map(math.isfinite).all(), column
    assert (results["fid"] >= 0).all()
    assert (results["fid_low"] <= results["fid_high"]).all()
    assert (results["kid_low"] <= results["kid_high"]).all()
    for column in ("precision", "recall", "recognizability", "blank", "duplicates"):
        assert results[column].between(0, 1).all(), column
    real = results[results["model"] == REAL_FLOOR]
    assert (real["blank"] == 0).all() and (real["duplicates"] < 0.05).all()


def test_json_and_tables_agree_with_the_csv(finished):
    out, results, _ = finished
    from_json = read_results(out / "results.json")
    pd.testing.assert_frame_equal(from_json, results, check_dtype=False)
    table = (out / "results.md").read_text(encoding="utf-8")
    assert table.count("\n") == 2 + len(results)
    tex = (out / "results.tex").read_text(encoding="utf-8")
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1


def test_sample_grids_show_8_by_8_drawings(finished):
    out, _, _ = finished
    side = 2 * (8 * (28 + 2) + 2)  # 8 tiles of 28 px, 2 px gaps and border, drawn at scale 2
    with Image.open(out / "grids" / "sketch-rnn-eye.png") as grid:
        assert grid.size == (side, side)


def test_index_states_the_setup_and_links_only_existing_files(finished):
    out, results, _ = finished
    index = (out / "README.md").read_text(encoding="utf-8")
    for fact in ("**Tiny test budget.**", "- Device: cpu", f"N = {N}", "- Seeds: 0",
                 "qd-cnn-k8/dense", "## Real-vs-real floor", "- eye: FID ", "- mouth: FID ",
                 "| test_fid_eigh | 0.500 |", "speedup_vs_scipy_sqrtm = 4.00",
                 f"| dcgan | eye | 1 | {STEPS['dcgan']} | 8 | {8 * STEPS['dcgan']} |"):
        assert fact in index, fact
    samples = index[index.index("## Samples"):index.index("## Figures")]
    assert samples.splitlines()[2] == "| Model | eye | mouth |"
    assert "| real-vs-real | ![real-vs-real, eye](grids/real-vs-real-eye.png) |" in samples
    links = re.findall(r"\]\(([^)]+)\)", index)
    # the confusion matrix, 3 x 2 sample grids, losses of the 3 runs, 2 learning curves (one
    # per category), the calibration
    assert len([link for link in links if link.endswith(".png")]) == 1 + 6 + 3 + 2 + 1
    assert [link for link in links if not (out / link).is_file()] == []


def test_a_second_run_reuses_the_trained_models_and_gives_the_same_numbers(finished):
    out, results, config = finished
    runs = out / WORK / "runs"
    checkpoints = sorted(runs.rglob("checkpoint.pt"))
    assert len(checkpoints) == 3  # dcgan per category, one class-conditional sketch-rnn
    stamps = [path.stat().st_mtime_ns for path in checkpoints]
    assert main(["compare", config]) == 0
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps  # nothing retrained
    pd.testing.assert_frame_equal(read_results(out / "results.csv"), results)
    assert not (out / "throughput.md").exists()  # no --benchmarks this time: no stale table


def test_load_entries_score_existing_runs_without_training(finished, tmp_path):
    out, results, _ = finished
    runs = out / WORK / "runs"
    config = tiny_config(tmp_path / "report")
    config["models"][0]["load"] = str(runs / "dcgan" / "seed0")  # one run per category inside
    config["models"][1]["load"] = str(runs / "sketch-rnn" / "seed0")
    outcome = run_comparison(config_from_dict(config))
    assert not (tmp_path / "report" / WORK / "runs").exists()
    pd.testing.assert_frame_equal(outcome.results, results, check_dtype=False)


def test_load_entry_with_another_budget_is_refused(finished, tmp_path):
    out, _, _ = finished
    config = tiny_config(tmp_path / "report")
    config["models"][1] |= {"load": str(out / WORK / "runs" / "sketch-rnn" / "seed0"),
                            "steps": 9}
    check_refused(tmp_path, config, "trained for 2 steps of batch 8; the config says 9 of 8")


# -- bad configs fail in one line before anything is trained -----------------------------------


def check_refused(tmp_path, config: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_comparison(config_from_dict(config))
    assert not (tmp_path / "report" / WORK / "runs").exists()


def test_unknown_model_is_refused(tmp_path):
    config = tiny_config(tmp_path / "report")
    config["models"] = [*config["models"], {"model": "stylegan", "steps": 1, "batch_size": 2}]
    check_refused(tmp_path, config, "unknown model 'stylegan'")


def test_unknown_category_is_refused(tmp_path):
    check_refused(tmp_path, tiny_config(tmp_path / "report", categories=["eye", "mouht"]),
                  "'mouht'.*did you mean 'mouth'")


def test_unknown_model_option_is_refused(tmp_path):
    config = tiny_config(tmp_path / "report")
    config["models"][0]["options"] = {"widht": 8}
    check_refused(tmp_path, config, "no option.*widht")


def test_missing_checkpoint_of_a_load_entry_is_refused(tmp_path):
    config = tiny_config(tmp_path / "report")
    config["models"][1]["load"] = str(tmp_path / "never-trained")
    check_refused(tmp_path, config, "never-trained/checkpoint.pt does not exist")


def test_too_few_drawings_for_the_held_out_sets_is_refused(tmp_path):
    # 'anvil' has 25 drawings in the mirror: 10 to train + 30 to validate + 2 x 10 to test
    # do not fit.
    config = tiny_config(tmp_path / "report", categories=["eye", "anvil"], per_class=10,
                         n_samples=10, calibration=False)
    check_refused(tmp_path, config, "'anvil' has 25 drawings; .* 60 are needed")


def test_unknown_key_is_a_one_line_cli_error(tmp_path, capsys):
    config = write_toml(tmp_path / "bad.toml", tiny_config(tmp_path / "report", sampels=5))
    assert main(["compare", config]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "unknown key(s) sampels" in error
    assert not (tmp_path / "report").exists()


# -- a category is a class name, as sketchgen.data names classes ------------------------------


def extra_eye_file(mirror, tmp_path) -> str:
    """A data file of class name eye beside the category eye: 40 of the mirror's drawings."""
    path = tmp_path / "more" / "eye.ndjson"
    path.parent.mkdir()
    lines = (mirror / "full" / "simplified" / "eye.ndjson").read_text().splitlines()[:40]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_sources_of_one_class_name_are_one_category_as_in_training(mirror, tmp_path):
    """`sketchgen train` reads the category eye and a file eye.ndjson as one class; so does
    the comparison: one classifier class and one row, and the unconditional model's run of
    eye reads both (the comparison refused them as "category eye given twice")."""
    extra = extra_eye_file(mirror, tmp_path)
    config = config_from_dict(tiny_config(tmp_path / "report", categories=["eye", extra, "mouth"]))
    runs = {(plan.spec.name, plan.categories): plan.train.categories
            for plan in plan_runs(config)}
    assert runs == {("dcgan", ("eye",)): ("eye", extra), ("dcgan", ("mouth",)): ("mouth",),
                    ("sketch-rnn", ("eye", "mouth")): ("eye", extra, "mouth")}
    real = load_real(config)
    assert real.class_names == ("eye", "mouth") and sorted(real.test) == ["eye", "mouth"]
    assert len(real.train_images) == 2 * config.per_class


def test_sources_of_a_single_class_name_are_refused_as_one_category(mirror, tmp_path):
    extra = extra_eye_file(mirror, tmp_path)
    check_refused(tmp_path, tiny_config(tmp_path / "report", categories=["eye", extra]),
                  "categories: give at least two classes .* got 'eye'")


@pytest.mark.parametrize("name", ["cpu-small", "gpu-paper"])
def test_shipped_configs_are_valid(name):
    """Both configs plan without error: models, options, categories and sizes all resolve."""
    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml"
    config = load_config(path)
    plans = plan_runs(config)
    conditional = {plan.spec.name for plan in plans if plan.conditional}
    unconditional = {"dcgan", "superdeep", "tf-dcgan"}
    assert conditional == {spec.name for spec in config.models} - unconditional
    assert {spec.model for spec in config.models} >= {"ddpm", "sketch-transformer"}
    runs_per_seed = len(conditional) + len(unconditional) * len(config.categories)
    assert len(plans) == len(config.seeds) * runs_per_seed


def test_a_model_entry_sets_how_often_its_runs_log_gradient_norms(tmp_path):
    """``grad_norm_every`` of a [[models]] table reaches its runs' TrainConfig (the label
    smoothing reproduction draws gradient norms over training); left out, TrainConfig's."""
    config = tiny_config(tmp_path / "report")
    config["models"] = [config["models"][0] | {"grad_norm_every": 5}, config["models"][1]]
    every = {plan.spec.name: plan.train.grad_norm_every
             for plan in plan_runs(config_from_dict(config))}
    assert every == {"dcgan": 5, "sketch-rnn": TrainConfig().grad_norm_every}
