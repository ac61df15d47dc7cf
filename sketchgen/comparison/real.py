"""The real drawings of a comparison and the evaluator that judges against them.

Owns: :class:`RealData` and :func:`load_real` (the split of each category's drawings) and the
evaluator's life cycle in a comparison: :func:`get_classifier` trains it (or loads and checks
a saved one) and :func:`evaluate_classifier` tests it on the held-out drawings.

Data: per category the first ``per_class`` drawings are the training data (exactly what
``sketchgen train`` reads); the next ``2 * n_samples`` are held out and split at random into
the reference set (compared with every model's samples) and a second real set of the same
size (the real-vs-real floor). The classifier is trained on the training drawings (early
stopping on a part of them) and tested on the held-out ones.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING
from sketchgen.comparison.config import CompareConfig
from sketchgen.data.datasets import load_bitmaps, split_indices
from sketchgen.errors import UsageError
from sketchgen.evaluation.classifier import Classifier
from sketchgen.evaluation.evaluator import (
    Evaluation,
    evaluate,
    load_classifier,
    save_classifier,
    train_classifier,
)


@dataclass(frozen=True)
class RealData:
    """Per class: the training drawings and the two held-out sets of N."""

    class_names: tuple[str, ...]
    train_images: np.ndarray  # uint8 (M, size, size): the first per_class of every class
    train_labels: np.ndarray  # int64 (M,)
    reference: dict[str, np.ndarray]  # class -> N held-out bitmaps compared with samples
    second: dict[str, np.ndarray]  # class -> N other held-out bitmaps (the floor)


def load_real(config: CompareConfig) -> RealData:
    """Bitmaps of every category, split as the module docstring says; too few is an error."""
    held_out = 2 * config.n_samples
    try:
        loaded = load_bitmaps(config.categories, config.size,
                              per_class=config.per_class + held_out)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    train_parts, label_parts, reference, second = [], [], {}, {}
    for index, name in enumerate(loaded.class_names):
        images = loaded.bitmaps[loaded.labels == index]
        if len(images) < config.per_class + held_out:
            raise UsageError(
                f"category {name!r} has {len(images)} drawings; per_class + 2 * n_samples = "
                f"{config.per_class + held_out} are needed (lower per_class or n_samples)")
        train_parts.append(images[: config.per_class])
        label_parts.append(np.full(config.per_class, index, dtype=np.int64))
        first, other = split_indices(held_out, config.seed, (0.5, 0.5))
        rest = images[config.per_class:]
        reference[name], second[name] = rest[first], rest[other]
    return RealData(tuple(loaded.class_names), np.concatenate(train_parts),
                    np.concatenate(label_parts), reference, second)


def get_classifier(config: CompareConfig, real: RealData, device: torch.device) -> Classifier:
    """Load the configured classifier (checked against the data) or train one on the
    training drawings, with early stopping on ``valid_fraction`` of them."""
    settings = config.classifier
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
    save_classifier(trained, config.work_dir / "classifier.pt")
    return trained


def _check_classifier(loaded: Classifier, config: CompareConfig, real: RealData) -> None:
    if list(loaded.class_names) != list(real.class_names):
        raise UsageError(f"classifier: {config.classifier.load} knows classes "
                         f"{loaded.class_names}, the config has {list(real.class_names)}")
    rendered_like_models = (loaded.config.size == config.size and not loaded.config.channels
                            and loaded.config.line_width == GOOGLE_LINE_WIDTH
                            and loaded.config.padding == GOOGLE_PADDING)
    if not rendered_like_models:
        raise UsageError(f"classifier: {config.classifier.load} was trained on other bitmaps "
                         f"than the models make ({loaded.config}); train one with this config")


def evaluate_classifier(classifier: Classifier, real: RealData) -> Evaluation:
    """Accuracy on every held-out real drawing (never trained on)."""
    images = np.concatenate([np.concatenate([real.reference[n], real.second[n]])
                             for n in real.class_names])
    labels = np.repeat(np.arange(len(real.class_names)),
                       [len(real.reference[n]) + len(real.second[n]) for n in real.class_names])
    return evaluate(classifier, images, labels)
