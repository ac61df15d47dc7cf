"""The width-k CNN classifier on small real subsets of the shared Quick, Draw! mirror."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sketchgen.cli import main
from sketchgen.data.datasets import load_drawings
from sketchgen.errors import CheckpointError, FieldError
from sketchgen.evaluation.classifier import Classifier, ClassifierConfig, build_model, scaled
from sketchgen.evaluation.evaluator import (
    CHECKPOINT_FORMAT,
    Evaluation,
    build_optimiser,
    evaluate,
    fit_and_evaluate,
    load_classifier,
    recognizability,
    save_classifier,
    source_locations,
    train_classifier,
    training_images,
    weights_sha256,
)
from sketchgen.evaluation.feature_space import EvaluatorConfig
from sketchgen.evaluation.metrics import extract_features, fid
from sketchgen.evaluation.scoring import make_scorer
from sketchgen.report.figures import plot_confusion
from sketchgen.runtime import save_checkpoint

# Four of the mirror's 250-drawing categories: 1000 real drawings, 800 / 100 / 100 split.
CATEGORIES = ["crab", "eyeglasses", "hat", "sock"]
PER_CLASS = 250
CHANCE = 1 / len(CATEGORIES)
CONFIG = ClassifierConfig(width=8, batch_size=64, max_epochs=10, patience=3)


@pytest.fixture(scope="module")
def plain_data(mirror) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return training_images(CATEGORIES, CONFIG, per_class=PER_CLASS, mirror=mirror)


@pytest.fixture(scope="module")
def trained(plain_data, mirror) -> tuple[Classifier, Evaluation]:
    sources = source_locations(CATEGORIES, CONFIG, mirror)
    return fit_and_evaluate(*plain_data, CONFIG, device="cpu", sources=sources)


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
    assert loaded.manifest == classifier.manifest and loaded.sha256 == classifier.sha256


def test_manifest_says_what_the_classifier_was_trained_on(trained, mirror):
    classifier, evaluation = trained
    manifest = classifier.manifest
    assert manifest["sources"] == [str(mirror / "full" / "simplified" / f"{name}.ndjson")
                                   for name in CATEGORIES]
    assert manifest["class_names"] == CATEGORIES and manifest["seed"] == CONFIG.seed
    # 80/10/10 of 4 x 250: the rows of each class in the training and validation parts
    assert sum(manifest["rows_per_class"].values()) == 800
    assert sum(manifest["valid_rows_per_class"].values()) == 100
    assert set(manifest["rows_per_class"]) == set(CATEGORIES)
    best = classifier.history[classifier.best_epoch - 1]
    assert manifest["valid_accuracy"] == best["valid_accuracy"]
    assert manifest["test_accuracy"] == evaluation.accuracy
    assert sum(manifest["test_rows_per_class"].values()) == 100
    assert classifier.sha256 == weights_sha256(classifier) and len(classifier.sha256) == 64


def test_evaluator_command_trains_and_saves_one_with_its_manifest(tmp_path, mirror, capsys):
    out = tmp_path / "evaluator.pt"
    argv = ["evaluator", "crab", "hat", "--out", str(out), "--per-class", "40", "--width", "2",
            "--max-epochs", "1", "--seed", "3", "--device", "cpu"]
    assert main(argv) == 0
    loaded = load_classifier(out, device="cpu")
    assert loaded.config == ClassifierConfig(width=2, max_epochs=1, seed=3)
    rows = loaded.manifest["rows_per_class"]
    assert set(rows) == {"crab", "hat"} and sum(rows.values()) == 64  # 80% of 2 x 40
    assert loaded.manifest["seed"] == 3 and loaded.class_names == ["crab", "hat"]
    assert loaded.sha256 in capsys.readouterr().err
    assert main(argv) == 2  # the file exists: refused, not replaced
    assert main([*argv[:2], "--out", str(tmp_path / "one.pt")]) == 2
    assert "at least two classes" in capsys.readouterr().err and not (tmp_path / "one.pt").exists()


def test_recognizability_of_a_category_the_classifier_does_not_know_is_nan(plain_data, trained):
    images, labels, _ = plain_data
    classifier, _ = trained
    scorer = make_scorer(classifier, {"hat": images[labels == 2][:50],
                                      "giraffe": images[labels == 3][:50]}, 5, 0.95, 0)
    unknown = scorer.score("giraffe", images[labels == 2][50:100])
    assert np.isnan(unknown["recognizability"]) and unknown["fid"] > 0.0
    assert scorer.score("hat", images[labels == 2][50:100])["recognizability"] > 0.5


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


def test_confused_pairs_add_both_directions_of_a_pair():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 2, 0, 1, 1, 2])
    evaluation = Evaluation.from_predictions(true, predicted, ["cake", "birthday cake", "mug"])
    # cake -> birthday cake 1/4 and birthday cake -> cake 1/2: one pair, 0.75, led by the
    # class mistaken more often; mug -> birthday cake 1/2; cake -> mug 1/4.
    assert evaluation.confused_pairs() == [
        ("birthday cake", "cake", 0.75),
        ("mug", "birthday cake", 0.5),
        ("cake", "mug", 0.25),
    ]
    assert evaluation.confused_pairs(1) == [("birthday cake", "cake", 0.75)]


# --- the reference's variants: batch norm, L2, the fully connected baseline -----------------

# ClassifierConfig().to_dict() before batch_norm, l2 and architecture existed: it keys the
# default evaluator's cache and is stored in every saved classifier and report.
LEGACY_SETTINGS = {"width": 16, "channels": [], "size": 28, "line_width": 16.0, "padding": 16.0,
                   "batch_size": 128, "learning_rate": 0.001, "max_epochs": 15, "patience": 2,
                   "seed": 0}
# sha256 of the default evaluator's recipe (its cache key) before those fields existed
LEGACY_EVALUATOR_KEY = "48ac7b8fba263f3a0c3a40e745d8403bfc6c736c077c5d4ea7ecfa218c07b923"


def legacy_network(num_classes: int, width: int, seed: int = 0) -> nn.Module:
    """The network exactly as build_model made it before those fields existed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers, channels = [], 1
        for block in range(4):
            out = width * 2**block
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        return nn.ModuleDict({
            "convolutions": nn.Sequential(*layers, nn.Flatten()),
            "dense": nn.Sequential(nn.Linear(channels, 8 * width), nn.ReLU()),
            "logits": nn.Linear(8 * width, num_classes),
        })


def assert_same_state(state: dict, expected: dict) -> None:
    assert list(state) == list(expected)
    assert all(torch.equal(state[key], expected[key]) for key in expected)


def test_new_options_at_their_defaults_change_no_dict_and_no_network():
    assert ClassifierConfig().to_dict() == LEGACY_SETTINGS
    explicit = ClassifierConfig(architecture="cnn", batch_norm=False, l2=0.0)
    assert explicit.to_dict() == LEGACY_SETTINGS and explicit == ClassifierConfig()
    recipe = json.dumps(EvaluatorConfig().to_dict(), sort_keys=True).encode()
    assert hashlib.sha256(recipe).hexdigest() == LEGACY_EVALUATOR_KEY
    assert ClassifierConfig().feature_name == "qd-cnn-k16/dense"
    for width in (1, 3):
        built = build_model(ClassifierConfig(width=width), 5).state_dict()
        assert_same_state(built, legacy_network(5, width).state_dict())
    # Set, they are stored, and read back.
    varied = ClassifierConfig(batch_norm=True, l2=1e-5)
    assert {key: varied.to_dict()[key] for key in ("batch_norm", "l2")} == {
        "batch_norm": True, "l2": 1e-5}
    assert "architecture" not in varied.to_dict()
    assert ClassifierConfig.from_dict(varied.to_dict()) == varied


def test_a_classifier_saved_before_the_options_existed_still_loads(tmp_path, plain_data):
    settings = {**LEGACY_SETTINGS, "width": 2}
    network = legacy_network(3, 2)
    old = {"format": CHECKPOINT_FORMAT, "settings": settings, "class_names": ["a", "b", "c"],
           "history": [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.0,
                        "valid_accuracy": 0.5}], "best_epoch": 1,
           "state_dict": network.state_dict()}
    loaded = load_classifier(save_checkpoint(old, tmp_path / "old.pt"), device="cpu")
    assert loaded.config == ClassifierConfig(width=2) and loaded.config.to_dict() == settings
    assert loaded.manifest == {}  # saved before manifests existed
    save_checkpoint({**old, "manifest": ["not", "a", "dict"]}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="manifest"):
        load_classifier(tmp_path / "bad.pt", device="cpu")
    assert_same_state(loaded.model.state_dict(), network.state_dict())
    images = plain_data[0][:8]
    x = scaled(torch.from_numpy(images[:, None]))
    expected = network["logits"](network["dense"](network["convolutions"](x)))
    np.testing.assert_allclose(loaded.logits(images), expected.detach().numpy(), rtol=1e-6)
    # Still refused: a key no version has, and a missing one of the original keys.
    for spoiled, message in (({**settings, "dropout": 0.5}, "expected the keys"),
                             ({k: v for k, v in settings.items() if k != "seed"},
                              "expected the keys")):
        save_checkpoint({**old, "settings": spoiled}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            load_classifier(tmp_path / "bad.pt", device="cpu")


def test_batch_norm_follows_every_convolution_and_is_trained_and_saved(plain_data, tmp_path):
    config = ClassifierConfig(width=3, batch_norm=True, batch_size=64, max_epochs=1)
    layers = list(build_model(config, 4).convolutions)
    norms = [i for i, layer in enumerate(layers) if isinstance(layer, nn.BatchNorm2d)]
    assert [layers[i].num_features for i in norms] == [3, 6, 12, 24]
    assert all(isinstance(layers[i - 2], nn.Conv2d) and isinstance(layers[i - 1], nn.ReLU)
               and isinstance(layers[i + 1], nn.MaxPool2d) for i in norms)
    assert not any(isinstance(layer, nn.BatchNorm2d)
                   for layer in build_model(ClassifierConfig(width=3), 4).convolutions)
    assert config.feature_name == "qd-cnn-k3-bn/dense"
    images, labels, names = plain_data
    classifier = train_classifier(images[:300], labels[:300], images[300:400], labels[300:400],
                                  names, config, device="cpu")
    first = classifier.model.convolutions[norms[0]]
    assert first.num_batches_tracked == 5 and first.running_mean.abs().sum() > 0
    loaded = load_classifier(save_classifier(classifier, tmp_path / "bn.pt"), device="cpu")
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.logits(images[:50]), classifier.logits(images[:50]))


def test_l2_is_keras_kernel_penalty_on_the_convolutions(plain_data):
    """One step with ``l2`` equals one plain Adam step on the loss plus l2 * sum(kernel**2)."""
    images, labels, _ = plain_data
    x, y = scaled(torch.from_numpy(images[:64, None])), torch.from_numpy(labels[:64])
    l2 = 0.05
    config = ClassifierConfig(width=2, l2=l2)
    model, reference = build_model(config, 4), build_model(config, 4)
    optimiser = build_optimiser(model, config)
    decays = {id(p): group["weight_decay"] for group in optimiser.param_groups
              for p in group["params"]}
    assert decays == {id(p): 2 * l2 if name.startswith("convolutions") and name.endswith(
        "weight") else 0 for name, p in model.named_parameters()}
    plain = torch.optim.Adam(reference.parameters(), lr=config.learning_rate)
    kernels = [m.weight for m in reference.modules() if isinstance(m, nn.Conv2d)]
    F.cross_entropy(model(x), y).backward()
    (F.cross_entropy(reference(x), y) + l2 * sum((w**2).sum() for w in kernels)).backward()
    optimiser.step()
    plain.step()
    for (name, value), expected in zip(model.state_dict().items(),
                                       reference.state_dict().values(), strict=True):
        torch.testing.assert_close(value, expected, msg=name)
    assert not torch.equal(model.convolutions[0].weight,
                           build_model(ClassifierConfig(width=2), 4).convolutions[0].weight)
    # Without l2: one group, no decay -- the optimiser of every classifier trained so far.
    (group,) = build_optimiser(model, ClassifierConfig(width=2)).param_groups
    assert group["weight_decay"] == 0 and len(group["params"]) == len(list(model.parameters()))


def test_fully_connected_baseline_is_the_family_without_convolutions(plain_data):
    config = ClassifierConfig(architecture="mlp", width=8, batch_size=64, max_epochs=10)
    model = build_model(config, 4)
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert model.dense[0].in_features == 28 * 28 and model.dense[0].out_features == 64
    assert config.feature_name == "qd-mlp-k8/dense"
    classifier, evaluation = fit_and_evaluate(*plain_data, config, device="cpu")
    assert classifier.features(plain_data[0][:5]).shape == (5, 64)
    # Measured 0.81 (100 test drawings; best epoch 6); chance is 0.25.
    assert evaluation.accuracy > CHANCE + 0.1
    for option in ({"batch_norm": True}, {"l2": 1e-5}):
        with pytest.raises(FieldError, match="no convolutions"):
            ClassifierConfig(architecture="mlp", **option)
