"""The real drawings of a comparison and the evaluator that judges against them.

Owns: :class:`RealData` and :func:`load_real` (the split of each category's drawings) and the
evaluator's life cycle in a comparison: :func:`get_classifier` trains it (or loads and checks
a saved one) and :func:`evaluate_classifier` tests it on the held-out drawings.

Data: per category the first ``per_class`` drawings are the training data (exactly what
``sketchgen train`` reads); the next ``eval_samples + 2 * n_samples`` are held out and split
at random (the evaluation's seed) into three disjoint sets: the validation set of
``eval_samples`` (learning curves, checkpoint selection), the test set of ``n_samples`` (the
reference of every final number) and a second real set of ``n_samples`` (scored against the
test set as the real-vs-real floor, and degraded for the calibration). Nothing is selected on
the test set. The classifier is trained on the training drawings (early stopping on a part of
them) and tested on the held-out ones.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING
from sketchgen.comparison.config import CompareConfig
from sketchgen.data.datasets import load_bitmaps, load_drawings, split_indices
from sketchgen.errors import UsageError
from sketchgen.evaluation.classifier import Classifier
from sketchgen.evaluation.evaluator import (
    Evaluation,
    evaluate,
    load_classifier,
    save_classifier,
    train_classifier,
)
from sketchgen.evaluation.feature_space import EvaluatorConfig, evaluator

CLASSIFIER = "classifier.pt"  # the comparison's evaluator, in its working folder


@dataclass(frozen=True)
class RealData:
    """Per class: the training drawings and the three held-out sets."""

    class_names: tuple[str, ...]
    train_images: np.ndarray  # uint8 (M, size, size): the first per_class of every class
    train_labels: np.ndarray  # int64 (M,)
    valid: dict[str, np.ndarray]  # class -> eval_samples bitmaps: curves, checkpoint selection
    test: dict[str, np.ndarray]  # class -> N bitmaps every final number is computed against
    second: dict[str, np.ndarray]  # class -> N other bitmaps: the floor, the calibration
    # class -> the strokes of `second` (the calibration's stroke degradations); None where a
    # category's source holds bitmaps only (.npy)
    second_drawings: dict[str, list | None]
    # class -> set name ("train", "valid", "test", "second") -> the rows of the category's
    # data each set holds (0 = its first drawing): disjoint, stated in the report
    rows: dict[str, dict[str, np.ndarray]]

    def set_sizes(self) -> dict[str, tuple[int, int, int]]:
        """Per class: drawings in the training, validation and test sets."""
        counts = np.bincount(self.train_labels, minlength=len(self.class_names))
        return {name: (int(counts[index]), len(self.valid[name]), len(self.test[name]))
                for index, name in enumerate(self.class_names)}


def load_real(config: CompareConfig) -> RealData:
    """Bitmaps of every category, split as the module docstring says; too few is an error."""
    held_out = config.eval_samples + 2 * config.n_samples
    needed = config.per_class + held_out
    try:
        loaded = load_bitmaps(config.categories, config.size, per_class=needed)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    strokes = _drawings_by_class(config, needed)
    train_parts, label_parts, valid, test, second = [], [], {}, {}, {}
    second_drawings: dict[str, list | None] = {}
    rows: dict[str, dict[str, np.ndarray]] = {}
    for index, name in enumerate(loaded.class_names):
        images = loaded.bitmaps[loaded.labels == index]
        if len(images) < needed:
            raise UsageError(
                f"category {name!r} has {len(images)} drawings; per_class + eval_samples + "
                f"2 * n_samples = {needed} are needed (lower per_class, eval_samples or "
                "n_samples)")
        train_parts.append(images[: config.per_class])
        label_parts.append(np.full(config.per_class, index, dtype=np.int64))
        parts = split_indices(held_out, config.seed, [size / held_out for size in (
            config.eval_samples, config.n_samples, config.n_samples)])
        rest = images[config.per_class: needed]
        valid[name], test[name], second[name] = (rest[part] for part in parts)
        rows[name] = {"train": np.arange(config.per_class),
                      **{key: config.per_class + part
                         for key, part in zip(("valid", "test", "second"), parts, strict=True)}}
        drawings = strokes.get(name)
        second_drawings[name] = (None if drawings is None else
                                 [drawings[config.per_class + i] for i in parts[2]])
    return RealData(tuple(loaded.class_names), np.concatenate(train_parts),
                    np.concatenate(label_parts), valid, test, second, second_drawings, rows)


def _drawings_by_class(config: CompareConfig, needed: int) -> dict[str, list]:
    """The strokes behind the bitmaps, per class, where every source of the comparison holds
    strokes (the calibration jitters and drops them); {} where one holds bitmaps only."""
    if not config.calibration or any(str(c).endswith(".npy") for c in config.categories):
        return {}
    loaded = load_drawings(config.categories, per_class=needed)
    return {name: [d for d, label in zip(loaded.drawings, loaded.labels, strict=True)
                   if label == index] for index, name in enumerate(loaded.class_names)}


def get_classifier(config: CompareConfig, real: RealData, device: torch.device) -> Classifier:
    """Load the configured classifier (checked against the data) or train one on the
    training drawings, with early stopping on ``valid_fraction`` of them."""
    settings = config.classifier
    if settings.evaluator == "default":  # a copy beside the runs, which read it from there
        # the suite's default evaluator at this size and seed, cached after its first build
        shared = evaluator(EvaluatorConfig(size=config.size, seed=config.seed)).classifier
        save_classifier(shared, config.work_dir / CLASSIFIER)
        return shared
    if settings.load is not None:
        loaded = load_classifier(settings.load, device)
        _check_classifier(loaded, config, real)
        return loaded
    train, valid = split_indices(len(real.train_images), config.seed,
                                 (1 - settings.valid_fraction, settings.valid_fraction))
    classifier_config = settings.classifier_config(config.size, config.seed)
    with tqdm(total=classifier_config.max_epochs, desc="classifier", unit="epoch",
              file=sys.stderr, dynamic_ncols=True) as bar:

        def log(entry: dict) -> None:
            bar.update(1)
            bar.set_postfix(valid_accuracy=f"{entry['valid_accuracy']:.3f}", refresh=False)

        trained = train_classifier(
            real.train_images[train], real.train_labels[train], real.train_images[valid],
            real.train_labels[valid], real.class_names, classifier_config, device, log)
    save_classifier(trained, config.work_dir / CLASSIFIER)
    return trained


def _check_classifier(loaded: Classifier, config: CompareConfig, real: RealData) -> None:
    rendered_like_models = (loaded.config.size == config.size and not loaded.config.channels
                            and loaded.config.line_width == GOOGLE_LINE_WIDTH
                            and loaded.config.padding == GOOGLE_PADDING)
    if not rendered_like_models:
        raise UsageError(f"classifier: {config.classifier.load} was trained on other bitmaps "
                         f"than the models make ({loaded.config}); train one with this config")


def evaluate_classifier(classifier: Classifier, real: RealData) -> Evaluation | None:
    """Accuracy on every held-out real drawing (never trained on) of the categories the
    classifier knows (a loaded evaluator may know others); None if it knows none of them."""
    known = [name for name in real.class_names if name in classifier.class_names]
    if not known:
        return None
    held_out = {name: np.concatenate([real.valid[name], real.test[name], real.second[name]])
                for name in known}
    images = np.concatenate([held_out[name] for name in known])
    labels = np.repeat([classifier.class_names.index(name) for name in known],
                       [len(held_out[name]) for name in known])
    return evaluate(classifier, images, labels)
