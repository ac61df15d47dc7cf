"""The comparison protocol on a tiny config with real mirror data: seeds, disjoint real sets,
learning curves, best-valid selection, and the executors (in this process, worker processes,
submitit's local cluster) giving the same numbers.

One comparison runs per session (module fixture) with two seeds; the executors' runs reuse
its settings in their own folders. Model quality at a few steps is not asserted.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sketchgen.comparison.config import config_from_dict
from sketchgen.comparison.executors import PROGRESS
from sketchgen.comparison.real import load_real
from sketchgen.comparison.run import evaluator_lines, run_comparison
from sketchgen.errors import UsageError
from sketchgen.report.results import REAL_FLOOR

SEEDS = [0, 1]
EVAL_EVERY = 2
STEPS = 5  # validation at 0, 2, 4 and the last step, 5


def protocol_config(out, **changes):
    return config_from_dict({
        "name": "protocol", "label": "Tiny protocol test", "categories": ["eye", "mouth"],
        "per_class": 120, "n_samples": 40, "eval_samples": 30, "seeds": SEEDS,
        "eval_every": EVAL_EVERY, "select": "best-valid", "device": "cpu", "bootstrap": 5,
        "calibration": False, "out": str(out), "classifier": {"width": 8, "max_epochs": 1},
        "models": [{"model": "dcgan", "steps": STEPS, "batch_size": 8,
                    "options": {"width": 8}}],
    } | changes)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("protocol") / "report"
    config = protocol_config(out)
    run_comparison(dataclasses.replace(config, executor=dataclasses.replace(config.executor,
                                                                            jobs=1)))
    return out


def read(out, name):
    return pd.read_csv(out / name)


def numbers(out):
    """The results without the training seconds: wall-clock, never the same twice."""
    return read(out, "results.csv").drop(columns="train_seconds")


def test_results_hold_one_row_per_model_category_and_seed(finished):
    results = read(finished, "results.csv")
    models = results[results["model"] != REAL_FLOOR]
    assert sorted(zip(models["category"], models["seed"], strict=True)) == [
        (category, seed) for category in ("eye", "mouth") for seed in SEEDS]
    assert (models["images_seen"] == models["steps"] * models["batch_size"]).all()
    assert (models["train_seconds"] > 0).all()
    assert models["parameters"].str.match(r"G [\d,]+; D [\d,]+").all()
    assert (models["selected"] == "best-valid").all()


def test_the_aggregate_is_the_mean_std_and_min_over_seeds(finished):
    results, aggregate = read(finished, "results.csv"), read(finished, "aggregate.csv")
    for category in ("eye", "mouth"):
        fids = results[(results["model"] == "dcgan") & (results["category"] == category)]["fid"]
        row = aggregate[(aggregate["model"] == "dcgan") & (aggregate["category"] == category)]
        assert row["seeds"].item() == len(SEEDS)
        assert row["fid"].item() == pytest.approx(fids.mean())
        assert row["fid_std"].item() == pytest.approx(fids.std(ddof=1))
        assert row["fid_min"].item() == pytest.approx(fids.min())


def test_curves_are_scored_at_exactly_the_configured_steps(finished):
    curves = read(finished, "curves.csv")
    for (category, seed), run in curves.groupby(["category", "seed"]):
        assert sorted(run["step"]) == [0, 2, 4, 5], (category, seed)
    assert curves["fid"].notna().all() and (curves["fid"] > 0).all()


def test_best_valid_scores_the_checkpoint_of_the_lowest_validation_fid(finished):
    results, curves = read(finished, "results.csv"), read(finished, "curves.csv")
    for _, row in results[results["model"] == "dcgan"].iterrows():
        run = curves[(curves["category"] == row["category"]) & (curves["seed"] == row["seed"])]
        assert row["steps"] == run.loc[run["fid"].idxmin(), "step"]


def test_the_report_states_seeds_selection_and_set_sizes(finished):
    index = (finished / "README.md").read_text(encoding="utf-8")
    assert "best-valid" in index and "2 seeds" in index
    assert "120" in index and "30" in index and "40" in index  # train, valid, test sizes


def test_train_validation_and_test_sets_are_disjoint_rows_of_the_data(tmp_path):
    config = protocol_config(tmp_path / "r", calibration=True)
    real = load_real(config)
    for name in real.class_names:
        rows = real.rows[name]
        sizes = {key: len(value) for key, value in rows.items()}
        assert sizes == {"train": 120, "valid": 30, "test": 40, "second": 40}
        together = np.concatenate(list(rows.values()))
        assert len(np.unique(together)) == len(together)  # no row in two sets
        assert len(real.second_drawings[name]) == 40


def test_worker_processes_give_the_same_numbers(finished, tmp_path):
    config = protocol_config(tmp_path / "report")
    config = dataclasses.replace(config, executor=dataclasses.replace(config.executor, jobs=2))
    run_comparison(config)
    pd.testing.assert_frame_equal(numbers(tmp_path / "report"), numbers(finished))
    progress = (tmp_path / "report" / "_work" / PROGRESS).read_text(encoding="utf-8")
    assert progress.startswith("runs: 4 done, 0 running, 0 queued")


def test_submitit_jobs_give_the_same_numbers_and_a_second_submission_trains_nothing(
        finished, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from sketchgen.comparison import executors

    config = protocol_config(tmp_path / "report")
    config = dataclasses.replace(config, executor=dataclasses.replace(config.executor,
                                                                      kind="slurm"))
    real_execute = executors.execute
    monkeypatch.setattr("sketchgen.comparison.run.execute",
                        lambda jobs, settings, work_dir: real_execute(jobs, settings, work_dir,
                                                                      cluster="local"))
    run_comparison(config)
    pd.testing.assert_frame_equal(numbers(tmp_path / "report"), numbers(finished))
    checkpoints = sorted((tmp_path / "report" / "_work" / "runs").rglob("checkpoint.pt"))
    stamps = [path.stat().st_mtime_ns for path in checkpoints]
    run_comparison(config)  # resubmitted: every run is finished, none is trained again
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps


def test_the_default_evaluator_never_saw_a_held_out_drawing(tmp_path):
    """It trained on the first 250 drawings of eye and mouth: with fewer training drawings
    per category, some of those would be validation or test drawings, so it is refused."""
    config = protocol_config(tmp_path / "report", classifier={"evaluator": "default"})
    with pytest.raises(UsageError, match="first 250 drawings of eye, mouth; per_class = 120"):
        run_comparison(config)
    assert not (tmp_path / "report").exists()


def test_the_report_names_its_evaluator_in_a_few_words_without_local_paths():
    """The evaluator file keeps the whole manifest; a paper's report gets counts, ranges and
    the sources' folder, never a machine's absolute paths."""
    sources = [f"/home/someone/mirror/full/simplified/{name}.ndjson"
               for name in ("bear", "eye", "mouth")]
    classifier = SimpleNamespace(feature_name="qd-cnn-k16/dense", sha256="ab" * 32, manifest={
        "sources": sources, "class_names": [f"c{i}" for i in range(8)],
        "rows_per_class": {"bear": 198, "eye": 200, "mouth": 212}, "seed": 0,
        "valid_accuracy": 0.59384615})
    name, digest, trained = evaluator_lines(classifier)
    assert (name, digest) == ("feature space qd-cnn-k16/dense", f"sha256 {'ab' * 32}")
    assert trained == ("trained on: sources 3 files in …/full/simplified/; "
                       "class_names 8: c0, c1, c2, …, c7; rows_per_class 610 (198–212 per "
                       "class); seed 0; valid_accuracy 0.594 (the evaluator file's manifest "
                       "has them in full)")
