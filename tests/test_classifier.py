"""The width-k CNN classifier on small real subsets of the shared Quick, Draw! mirror."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sketchgen.data.datasets import load_drawings
from sketchgen.evaluation.classifier import Classifier, ClassifierConfig, build_model
from sketchgen.evaluation.evaluator import (
    Evaluation,
    evaluate,
    fit_and_evaluate,
    load_classifier,
    recognizability,
    save_classifier,
    train_classifier,
    training_images,
)
from sketchgen.evaluation.metrics import extract_features, fid
from sketchgen.report.figures import plot_confusion

# Four of the mirror's 250-drawing categories: 1000 real drawings, 800 / 100 / 100 split.
CATEGORIES = ["crab", "eyeglasses", "hat", "sock"]
PER_CLASS = 250
CHANCE = 1 / len(CATEGORIES)
CONFIG = ClassifierConfig(width=8, batch_size=64, max_epochs=10, patience=3)


@pytest.fixture(scope="module")
def plain_data(mirror) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return training_images(CATEGORIES, CONFIG, per_class=PER_CLASS, mirror=mirror)


@pytest.fixture(scope="module")
def trained(plain_data) -> tuple[Classifier, Evaluation]:
    return fit_and_evaluate(*plain_data, CONFIG, device="cpu")


def test_plain_classifier_beats_chance_by_a_wide_margin(plain_data, trained):
    images, labels, class_names = plain_data
    classifier, evaluation = trained
    assert images.shape == (len(CATEGORIES) * PER_CLASS, 28, 28) and class_names == CATEGORIES
    assert evaluation.n == len(images) // 10  # the held-out tenth
    # Measured 0.83 (CONFIG, 100 test drawings); chance is 0.25.
    assert evaluation.accuracy > CHANCE + 0.4
    assert all(rate > CHANCE for rate in evaluation.per_class_accuracy.values())
    true, predicted, rate = evaluation.most_confused(1)[0]
    assert true != predicted and 0.0 < rate < 0.5


def test_early_stopping_keeps_the_best_epoch(plain_data):
    images, labels, names = plain_data
    order = np.random.default_rng(0).permutation(len(images))
    train, valid = order[:60], order[60:160]
    # 60 training drawings overfit fast: measured best epoch 18, stopped after epoch 20.
    config = ClassifierConfig(width=8, batch_size=20, max_epochs=40, patience=2)
    classifier = train_classifier(
        images[train], labels[train], images[valid], labels[valid], names, config, device="cpu"
    )
    losses = [entry["valid_loss"] for entry in classifier.history]
    assert len(losses) < config.max_epochs
    assert classifier.best_epoch == 1 + int(np.argmin(losses))
    assert len(losses) - classifier.best_epoch == config.patience
    # The weights returned are the best epoch's, not the last one's.
    best = classifier.history[classifier.best_epoch - 1]
    accuracy = float(np.mean(classifier.predict(images[valid]) == labels[valid]))
    assert accuracy == pytest.approx(best["valid_accuracy"])


def test_same_seed_same_weights_and_the_seed_matters(plain_data):
    images, labels, names = plain_data
    tiny = ClassifierConfig(width=2, batch_size=50, max_epochs=2, patience=1)

    def weights(config: ClassifierConfig) -> list[torch.Tensor]:
        args = (images[:200], labels[:200], images[200:300], labels[200:300], names, config)
        return list(train_classifier(*args, device="cpu").model.state_dict().values())

    first, again = weights(tiny), weights(tiny)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    other = weights(ClassifierConfig(width=2, batch_size=50, max_epochs=2, patience=1, seed=1))
    assert not all(torch.equal(x, y) for x, y in zip(first, other, strict=True))


def test_save_and_load_round_trip(plain_data, trained, tmp_path):
    images = plain_data[0][:64]
    classifier, _ = trained
    path = save_classifier(classifier, tmp_path / "nested" / "classifier.pt")
    assert [p.name for p in path.parent.iterdir()] == ["classifier.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["settings"]["width"] == 8 and raw["class_names"] == CATEGORIES
    loaded = load_classifier(path, device="cpu")
    assert loaded.config == classifier.config and loaded.class_names == classifier.class_names
    assert loaded.history == classifier.history and loaded.best_epoch == classifier.best_epoch
    np.testing.assert_array_equal(loaded.logits(images), classifier.logits(images))
    np.testing.assert_array_equal(loaded.features(images), classifier.features(images))


def test_features_are_the_named_dense_layer_and_batch_independent(plain_data, trained):
    images = plain_data[0][:300]
    classifier, _ = trained
    assert classifier.feature_name == "qd-cnn-k8/dense"
    features = classifier.features(images, batch_size=1000)
    assert features.shape == (300, classifier.num_features) == (300, 64)
    assert (features >= 0).all()  # post-ReLU activations
    np.testing.assert_allclose(classifier.features(images, batch_size=7), features, rtol=1e-6)
    halves = [
        extract_features(classifier.features, part, 1000) for part in (images[:150], images[150:])
    ]
    batched = [
        extract_features(classifier.features, part, 11) for part in (images[:150], images[150:])
    ]
    assert fid(*batched) == pytest.approx(fid(*halves), rel=1e-6)


def test_evaluation_from_hand_made_predictions():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 2, 1, 1, 1, 2])
    evaluation = Evaluation.from_predictions(true, predicted, ["cake", "birthday cake", "mug"])
    np.testing.assert_array_equal(evaluation.confusion, [[2, 1, 1], [0, 2, 0], [0, 1, 1]])
    assert evaluation.n == 8 and evaluation.accuracy == 5 / 8
    assert evaluation.per_class_accuracy == {"cake": 0.5, "birthday cake": 1.0, "mug": 0.5}
    assert evaluation.most_confused(2) == [
        ("mug", "birthday cake", 0.5),
        ("cake", "birthday cake", 0.25),
    ]


def test_recognizability_single_and_class_conditional(plain_data, trained):
    images, labels, _ = plain_data
    classifier, _ = trained
    hats = images[labels == CATEGORIES.index("hat")][:50]
    single = recognizability(classifier, hats, "hat")
    assert single.accuracy == float(np.mean(classifier.predict(hats) == CATEGORIES.index("hat")))
    assert set(single.per_class_accuracy) == {"hat"}
    mixed = recognizability(classifier, images[:40], [CATEGORIES[i] for i in labels[:40]])
    assert mixed.accuracy == evaluate(classifier, images[:40], labels[:40]).accuracy
    with pytest.raises(ValueError, match="not one of"):
        recognizability(classifier, hats, "giraffe")


def test_confusion_figure_is_a_png(trained, tmp_path):
    _, evaluation = trained
    path = plot_confusion(evaluation, tmp_path / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inputs_that_do_not_fit_are_refused(trained):
    classifier, _ = trained
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 28, 28\)"):
        classifier.predict(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="at least 16"):
        ClassifierConfig(size=8)  # four 2x2 poolings need 16 px


def test_stroke_aware_variant_trains_on_order_channels(mirror):
    config = ClassifierConfig(width=8, batch_size=64, max_epochs=10, channels=("ink", "order"))
    images, labels, names = training_images(CATEGORIES, config, per_class=PER_CLASS, mirror=mirror)
    assert images.shape == (len(CATEGORIES) * PER_CLASS, 2, 28, 28)
    classifier, evaluation = fit_and_evaluate(images, labels, names, config, device="cpu")
    assert classifier.feature_name == "qd-cnn-k8-ink+order/dense"
    assert build_model(config, 4).convolutions[0].in_channels == 2
    # Measured 0.84 (100 test drawings); chance is 0.25.
    assert evaluation.accuracy > CHANCE + 0.4
    # Generated strokes go through the classifier's own render settings.
    drawings = load_drawings(["hat"], per_class=5, mirror=mirror).drawings
    np.testing.assert_array_equal(classifier.render(drawings), images[labels == 2][:5])


def test_time_channel_reads_raw_drawings(mirror):
    config = ClassifierConfig(channels=("ink", "time"))
    images, labels, names = training_images(["hat", "sock"], config, per_class=10, mirror=mirror)
    assert images.shape == (20, 2, 28, 28) and names == ["hat", "sock"]
    assert images[:, 1].max() > 0  # raw timestamps drawn
