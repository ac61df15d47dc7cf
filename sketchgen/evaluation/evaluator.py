"""The evaluator's life cycle: training a classifier, saving and loading it, and judging it.

Training (:func:`train_classifier`): Adam on cross-entropy, early stopping on the validation
loss (the best epoch's weights are kept); :func:`training_images` is the one place that reads
real drawings for it, and :func:`fit_and_evaluate` splits, trains and tests in one call.

A classifier is saved with everything needed to rasterize new drawings the way its training
data were (class names, size, line width, padding, channels) plus k and the seed, as plain
Python types, so ``torch.load(weights_only=True)`` reads it back; the file is checked
(:func:`read_classifier_checkpoint`, with ``sketchgen.checkpoints``) before a network is built
from it. Its identity: :func:`weights_sha256` names the network whatever file it came from,
and the manifest says what it was trained on and how well it did (sources, rows per class,
seed, validation and test accuracy, class names).

:class:`Evaluation` is a confusion matrix: accuracy on labelled drawings (:func:`evaluate`) or
how often generated drawings are recognised as what they were meant to be
(:func:`recognizability`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rasterize.render import render
from sketchgen.checkpoints import check_class_names, check_layout, check_state, load
from sketchgen.config import EPOCHS, check_fields, instantiate, setting
from sketchgen.data.datasets import load_bitmaps, load_drawings, split_indices
from sketchgen.data.sources import locate, source_list
from sketchgen.errors import CheckpointError, ConfigError
from sketchgen.evaluation.classifier import (
    LATER_FIELDS,
    Classifier,
    ClassifierConfig,
    as_input,
    build_model,
    scaled,
)
from sketchgen.runtime import DEVICE, choose_device, save_checkpoint

CHECKPOINT_FORMAT = "sketchgen.evaluation.classifier/1"  # kept: the files saved so far say so
DEFAULT_CONFIG = ClassifierConfig()  # frozen, so one instance serves every default argument


# --- training -------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, count: int, num_classes: int) -> torch.Tensor:
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected {count} integer labels, got {labels.dtype} {labels.shape}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return torch.from_numpy(labels.astype(np.int64))


@torch.no_grad()
def _validation_loss_and_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device)
    for batch in torch.arange(len(images), device=images.device).split(batch_size):
        logits = model(scaled(images[batch]))
        loss_sum += F.cross_entropy(logits, labels[batch], reduction="sum")
        correct += (logits.argmax(dim=1) == labels[batch]).sum()
    return loss_sum.item() / len(images), correct.item() / len(images)


def build_optimiser(model: nn.Module, config: ClassifierConfig) -> torch.optim.Adam:
    """Adam at ``config.learning_rate``. With ``config.l2``, Keras's L2 on the convolution
    kernels: ``l2 * sum(w**2)`` in the loss adds ``2 * l2 * w`` to their gradients, which is
    Adam's (coupled, not AdamW's) ``weight_decay = 2 * l2`` on those kernels alone."""
    if not config.l2:
        return torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    kernels = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    others = [p for p in model.parameters() if all(p is not kernel for kernel in kernels)]
    return torch.optim.Adam([{"params": kernels, "weight_decay": 2 * config.l2},
                             {"params": others}], lr=config.learning_rate)


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    valid_images: np.ndarray,
    valid_labels: np.ndarray,
    class_names: Sequence[str],
    config: ClassifierConfig = DEFAULT_CONFIG,
    device: str | torch.device = DEVICE,
    log: Callable[[dict], None] | None = None,
    sources: Sequence[str] = (),
) -> Classifier:
    """Train with Adam and early stopping; returns the classifier at its best epoch.

    The data live on the device as uint8 for the whole run; batches are index slices of a
    permutation drawn from a ``torch.Generator`` seeded with ``config.seed``, so a CPU run is
    reproducible bit for bit. ``log`` receives each epoch's history entry:
    ``epoch``, ``train_loss``, ``valid_loss``, ``valid_accuracy``. ``sources``: where the
    drawings came from (:func:`source_locations`), kept in the classifier's manifest.
    """
    class_names = list(class_names)
    if len(class_names) < 2:
        raise ValueError("a classifier needs at least two classes")
    if len(train_images) == 0 or len(valid_images) == 0:
        raise ValueError("training and validation sets must both be non-empty")
    device = choose_device(device)
    x_train = as_input(train_images, config).to(device)
    x_valid = as_input(valid_images, config).to(device)
    y_train = _check_labels(train_labels, len(x_train), len(class_names)).to(device)
    y_valid = _check_labels(valid_labels, len(x_valid), len(class_names)).to(device)

    model = build_model(config, len(class_names)).to(device)
    optimiser = build_optimiser(model, config)
    batch_order = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best_loss, best_state, best_epoch = float("inf"), None, 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        for batch in torch.randperm(len(x_train), generator=batch_order).split(config.batch_size):
            batch = batch.to(device)
            loss = F.cross_entropy(model(scaled(x_train[batch])), y_train[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach() * len(batch)
        valid_loss, valid_accuracy = _validation_loss_and_accuracy(
            model, x_valid, y_valid, config.batch_size
        )
        entry = {
            "epoch": epoch,
            "train_loss": loss_sum.item() / len(x_train),
            "valid_loss": valid_loss,
            "valid_accuracy": valid_accuracy,
        }
        history.append(entry)
        if log is not None:
            log(entry)
        if valid_loss < best_loss:
            best_loss, best_epoch = valid_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    manifest = {
        "sources": list(sources),
        "class_names": class_names,
        "rows_per_class": _rows_per_class(y_train.cpu().numpy(), class_names),
        "valid_rows_per_class": _rows_per_class(y_valid.cpu().numpy(), class_names),
        "seed": config.seed,
        "valid_accuracy": history[best_epoch - 1]["valid_accuracy"],
    }
    return Classifier(model, config, class_names, history, best_epoch, manifest)


def _rows_per_class(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    return dict(zip(class_names, counts, strict=True))


def training_images(
    sources: Sequence[str],
    config: ClassifierConfig,
    per_class: int | None = None,
    mirror: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real drawings of ``sources`` (categories or files) rasterized with ``config``'s settings.

    The plain variant uses the cached bitmaps of ``sketchgen.data.datasets.load_bitmaps``; the
    stroke variant renders simplified drawings, or raw ones when it needs the ``time`` channel.
    Returns ``(images, labels, class_names)``.
    """
    render_settings = {"line_width": config.line_width, "padding": config.padding}
    if not config.channels:
        data = load_bitmaps(
            sources, size=config.size, per_class=per_class, mirror=mirror, **render_settings
        )
        return data.bitmaps, data.labels, data.class_names
    data = load_drawings(sources, fmt=_stroke_format(config), per_class=per_class,
                         mirror=mirror)
    images = render(data.drawings, size=config.size, channels=config.channels, **render_settings)
    return images, data.labels, data.class_names


def _stroke_format(config: ClassifierConfig) -> str:
    return "raw" if "time" in config.channels else "simplified"


def source_locations(
    sources: Sequence[str], config: ClassifierConfig, mirror: str | None = None
) -> list[str]:
    """Where :func:`training_images` reads each source: a URL, or a local file's path."""
    located = (locate(source, _stroke_format(config), mirror) for source in source_list(sources))
    return [url or str(path) for path, url, _ in located]


def fit_and_evaluate(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    config: ClassifierConfig = DEFAULT_CONFIG,
    device: str | torch.device = DEVICE,
    log: Callable[[dict], None] | None = None,
    sources: Sequence[str] = (),
) -> tuple[Classifier, Evaluation]:
    """Split with ``sketchgen.data.datasets.split_indices`` (80/10/10, ``config.seed``), train on
    the first part with early stopping on the second, and evaluate on the held-out third,
    whose rows and accuracy join the manifest (``test_rows_per_class``, ``test_accuracy``)."""
    train, valid, test = split_indices(len(images), seed=config.seed)
    classifier = train_classifier(
        images[train],
        labels[train],
        images[valid],
        labels[valid],
        class_names,
        config,
        device,
        log,
        sources,
    )
    tested = evaluate(classifier, images[test], labels[test])
    classifier.manifest |= {"test_rows_per_class": _rows_per_class(labels[test], class_names),
                            "test_accuracy": tested.accuracy}
    return classifier, tested


# --- saving and loading ---------------------------------------------------------------------


def save_classifier(classifier: Classifier, path: str | Path) -> Path:
    """Weights and the settings they were trained under, written atomically."""
    return save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "settings": classifier.config.to_dict(),
            "class_names": list(classifier.class_names),
            "history": classifier.history,
            "best_epoch": classifier.best_epoch,
            "manifest": classifier.manifest,
            "state_dict": {k: v.cpu() for k, v in classifier.model.state_dict().items()},
        },
        path,
    )


def load_classifier(path: str | Path, device: str | torch.device = DEVICE) -> Classifier:
    """A classifier saved by :func:`save_classifier` (read with ``weights_only=True``; its
    settings checked before the network is built, its weights' shapes after, each problem a
    CheckpointError naming the file)."""
    device = choose_device(device)
    checkpoint = read_classifier_checkpoint(path)
    config = ClassifierConfig.from_dict(checkpoint["settings"])
    model = build_model(config, len(checkpoint["class_names"]))
    check_state(model.state_dict(), checkpoint["state_dict"], "state_dict", Path(path))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    return Classifier(model, config, checkpoint["class_names"], checkpoint["history"],
                      checkpoint["best_epoch"], checkpoint.get("manifest", {}))


@dataclass(frozen=True)
class ClassifierLayout:
    """The dict of a saved classifier (:func:`save_classifier`)."""

    format: str
    settings: dict[str, Any]  # ClassifierConfig.to_dict()
    class_names: tuple[str, ...]
    history: tuple[dict[str, Any], ...]  # one entry per epoch
    best_epoch: int = setting(within=(0, EPOCHS.high))
    state_dict: dict[str, Any]
    manifest: dict[str, Any]  # {} in the files saved before manifests existed

    def __post_init__(self) -> None:
        check_fields(self)


def read_classifier_checkpoint(path: str | Path) -> dict[str, Any]:
    """A saved classifier, its layout and settings checked; nothing is built. Returns the dict
    as it was saved."""
    path = Path(path)
    checkpoint = load(path)
    layout = check_layout(ClassifierLayout, {"manifest": {}, **checkpoint}, path)
    if layout.format != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"format {layout.format!r} is not {CHECKPOINT_FORMAT!r}: "
                                    "not a sketchgen classifier")
    known = {spec.name for spec in fields(ClassifierConfig)}
    required = known - set(LATER_FIELDS)  # the others are saved only when not at defaults
    if not required <= set(layout.settings) <= known:
        raise CheckpointError(path, f"settings: expected the keys {', '.join(sorted(required))}"
                                    f" (and optionally {', '.join(LATER_FIELDS)})")
    try:
        instantiate(ClassifierConfig, layout.settings, "settings")
    except ConfigError as error:  # a field out of range, or sizes too big together
        raise CheckpointError(path, str(error)) from None
    check_class_names(layout.class_names, path, "class_names", at_least=2)
    return checkpoint


def weights_sha256(classifier: Classifier) -> str:
    """:attr:`Classifier.sha256`: which network this is, whatever file or device it came
    from."""
    return classifier.sha256


# --- evaluation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    class_names: list[str]
    confusion: np.ndarray  # (C, C) counts: row = true class, column = predicted class

    @classmethod
    def from_predictions(
        cls, true: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
    ) -> Evaluation:
        count = len(class_names)
        pairs = np.asarray(true, np.int64) * count + np.asarray(predicted, np.int64)
        confusion = np.bincount(pairs, minlength=count * count).reshape(count, count)
        return cls(list(class_names), confusion)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n)

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        """Accuracy per true class, for the classes that occur."""
        totals = self.confusion.sum(axis=1)
        return {
            name: float(self.confusion[i, i] / totals[i])
            for i, name in enumerate(self.class_names)
            if totals[i]
        }

    def rates(self) -> np.ndarray:
        """The confusion matrix normalised per row (true class); rows of absent classes are 0."""
        totals = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(
            self.confusion, totals, out=np.zeros(self.confusion.shape), where=totals > 0
        )

    def most_confused(self, top: int = 10) -> list[tuple[str, str, float]]:
        """``(true, predicted, fraction of true's drawings)``, the largest off-diagonal rates."""
        rates = self.rates()
        np.fill_diagonal(rates, 0.0)
        order = np.argsort(-rates, axis=None, kind="stable")[:top]
        return [
            (self.class_names[i], self.class_names[j], float(rates[i, j]))
            for i, j in zip(*np.unravel_index(order, rates.shape), strict=True)
            if rates[i, j] > 0
        ]

    def confused_pairs(self, top: int = 10) -> list[tuple[str, str, float]]:
        """``(a, b, rate)`` for the unordered pairs of classes most often taken for each other,
        as in the reference's table ("Cake, Birthday cake, 0.264"): ``rate`` is the fraction
        of a's drawings predicted as b plus that of b's predicted as a; ``a`` is the one
        mistaken more often."""
        rates = self.rates()
        np.fill_diagonal(rates, 0.0)
        both = np.triu(rates + rates.T, k=1)
        order = np.argsort(-both, axis=None, kind="stable")[:top]
        pairs = []
        for i, j in zip(*np.unravel_index(order, both.shape), strict=True):
            if both[i, j] > 0:
                a, b = (i, j) if rates[i, j] >= rates[j, i] else (j, i)
                pairs.append((self.class_names[a], self.class_names[b], float(both[i, j])))
        return pairs


def evaluate(
    classifier: Classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 512
) -> Evaluation:
    """Confusion matrix of the classifier on labelled images (accuracy, per class, pairs)."""
    labels = _check_labels(labels, len(images), len(classifier.class_names)).numpy()
    return Evaluation.from_predictions(
        labels, classifier.predict(images, batch_size), classifier.class_names
    )


def recognizability(
    classifier: Classifier, images: np.ndarray, categories: str | Sequence[str]
) -> Evaluation:
    """How often generated drawings are recognised as what they were meant to be.

    ``categories``: one name for a single-category model (then ``accuracy`` is the fraction
    classified as that category), or the requested category of each drawing for a
    class-conditional one (then ``per_class_accuracy`` gives it per category).
    """
    if isinstance(categories, str):
        labels = np.full(len(images), classifier.class_index(categories), dtype=np.int64)
    else:
        if len(categories) != len(images):
            raise ValueError(f"{len(categories)} categories for {len(images)} drawings")
        labels = np.array([classifier.class_index(name) for name in categories], dtype=np.int64)
    return evaluate(classifier, images, labels)
