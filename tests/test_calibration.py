"""Calibration of a feature space on real eye drawings: degradations, the table, the command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rasterize.render import render
from sketchgen.cli import main
from sketchgen.data.datasets import load_drawings
from sketchgen.evaluation import metrics
from sketchgen.evaluation.calibration import (
    COLUMNS,
    DEGRADATIONS,
    NONE,
    Inputs,
    calibrate,
    degrade,
)
from sketchgen.evaluation.evaluator import load_classifier
from sketchgen.report.calibration import calibration_markdown, plot_calibration

N = 250


def pixels(images: np.ndarray) -> np.ndarray:
    """Pixel features: a fixed random projection of the pixels through tanh (32 features)."""
    projection = np.random.default_rng(0).normal(size=(images[0].size, 32)) / 255.0
    return np.tanh(images.reshape(len(images), -1) @ projection)


@pytest.fixture(scope="module")
def eyes(mirror):
    """Two disjoint sets of N real eyes (bitmaps, drawings) and N real mouths (bitmaps)."""
    drawings = load_drawings(["eye"], per_class=2 * N, mirror=mirror).drawings
    mouths = load_drawings(["mouth"], per_class=N, mirror=mirror).drawings
    return render(drawings[:N]), drawings[N:], render(mouths)


@pytest.fixture(scope="module")
def frame(eyes) -> pd.DataFrame:
    return calibrate(pixels, *eyes, size=28, seed=0)


def test_registry_has_every_degradation_at_four_strengths_or_more():
    assert set(DEGRADATIONS) == {"noise", "blur", "rectangles", "jitter", "drop strokes",
                                 "contamination", "mode collapse"}
    for degradation in DEGRADATIONS.values():
        assert len(degradation.strengths) >= 4 and 0 not in degradation.strengths


def test_fid_rises_with_every_degradations_strength(frame):
    floor = frame.loc[frame["degradation"] == NONE, "fid"].item()
    at_floor = []
    for name, degradation in DEGRADATIONS.items():
        rows = frame[frame["degradation"] == name]
        assert list(rows["strength"]) == list(degradation.strengths)
        fids = list(rows["fid"])
        assert all(np.diff(fids) > 0), (name, fids)
        assert fids[-1] > 1.3 * floor, (name, fids)  # contamination: 1.47 x
        if fids[0] <= floor:
            at_floor.append(name)
    # The weakest strengths are chosen just above the floor (with a trained evaluator at
    # N = 500); in 32 pixel features at N = 250, one of them may score within the floor's own
    # sampling noise (jitter of σ = 4 units and 10% contamination did, for other seeds).
    assert len(at_floor) <= 1, at_floor
    assert list(frame.columns) == list(COLUMNS)


def test_none_row_is_the_real_vs_real_floor(eyes, frame):
    reference, drawings, _ = eyes
    none = frame[frame["degradation"] == NONE]
    assert len(none) == 1 and none["strength"].item() == 0.0 and frame.index[none.index[0]] == 0
    real = metrics.extract_features(pixels, reference)
    second = metrics.extract_features(pixels, render(drawings))
    assert none["fid"].item() == metrics.fid(real, second)
    assert none["kid"].item() == metrics.kid(real, second).mean
    assert tuple(none[["precision", "recall"]].iloc[0]) == metrics.precision_recall(real, second)


def test_every_degradation_is_deterministic_for_a_seed_and_changes_the_images(eyes):
    reference, drawings, other = eyes
    inputs = Inputs(list(drawings), render(drawings), other, 28)
    for name, degradation in DEGRADATIONS.items():
        for strength in degradation.strengths:
            images = degrade(name, inputs, strength, seed=0)
            assert images.dtype == np.uint8 and images.shape == inputs.images.shape
            np.testing.assert_array_equal(images, degrade(name, inputs, strength, seed=0))
            assert not np.array_equal(images, inputs.images), (name, strength)
        if name != "blur":  # the one without randomness
            assert not np.array_equal(images, degrade(name, inputs, strength, seed=1)), name
    collapsed = degrade("mode collapse", inputs, 4.0, seed=0)
    assert len(np.unique(collapsed.reshape(N, -1), axis=0)) == 4
    mixed = degrade("contamination", inputs, 0.2, seed=0)
    assert (mixed != inputs.images).any(axis=(1, 2)).sum() == pytest.approx(0.2 * N, abs=2)


def test_figure_and_table(frame, tmp_path):
    path = plot_calibration(frame, tmp_path / "calibration.png", "eye")
    assert Image.open(path).size[0] > 600
    markdown = calibration_markdown(frame)
    table = markdown.splitlines()
    assert len(table) == 2 + len(frame) and "none (real vs real)" in table[2]
    assert table[3].startswith("| noise (σ, grey levels) | 16.0 |")
    assert calibration_markdown(pd.read_csv(_written(frame, tmp_path))) == markdown
    with pytest.raises(ValueError, match="not a calibration frame"):
        calibration_markdown(frame[frame["degradation"] != NONE])


def _written(frame: pd.DataFrame, folder) -> str:
    path = folder / "calibration.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_calibrate_command_writes_its_folder_after_the_evaluators_drawings(tmp_path, capsys):
    evaluator = tmp_path / "evaluator.pt"
    assert main(["evaluator", "eye", "mouth", "--out", str(evaluator), "--per-class", "40",
                 "--width", "2", "--max-epochs", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    out = tmp_path / "calibration"
    assert main(["calibrate", "eye", "--evaluator", str(evaluator), "--n", "100",
                 "--out", str(out)]) == 0
    written = pd.read_csv(out / "calibration.csv")
    assert list(written.columns) == list(COLUMNS) and written["fid"].notna().all()
    assert (out / "calibration.png").is_file()
    # The floor: eyes 40..139 against 140..239, after the 40 the evaluator was trained on.
    classifier = load_classifier(evaluator, device="cpu")
    eyes = load_drawings(["eye"], per_class=240).drawings
    real, second = (metrics.extract_features(classifier.features, render(part))
                    for part in (eyes[40:140], eyes[140:240]))
    assert written.loc[0, "fid"] == pytest.approx(metrics.fid(real, second), rel=1e-9)
    assert capsys.readouterr().out.startswith((out / "calibration.md").read_text()[:40])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["calibrate", "eye", "--evaluator", str(evaluator), "--n", "100",
                 "--out", str(tmp_path / "mine")]) == 2  # a folder of the user's: refused
    assert "--overwrite" in capsys.readouterr().err
