"""The Quick, Draw! classifier: evaluator (recognizability) and feature space (FID, KID, P/R).

Architecture: the width-k CNN family of the reference project (``../shared/reference``, the
Copenhagen "QuickDraw Data: large CNNs and GANs" slides, 72% on 50 categories with k = 12):
four 3x3 convolutions with k, 2k, 4k and 8k filters ("same" padding, ReLU), each followed by
2x2 max-pooling, then a dense layer of 8k ReLU units and a softmax over the categories.
Pooling floors odd sides as Keras does, so 28 px goes 28 -> 14 -> 7 -> 3 -> 1 exactly as in
the reference table; at larger sizes the last map (``size // 16`` per side after flooring) is
flattened into the dense layer. Trained with Adam (1e-3) on cross-entropy, early stopping on
the validation loss (the best epoch's weights are kept).

Inception weights cannot be downloaded here and fit 28 px sketches poorly, so the dense
layer's 8k activations are the feature space; :attr:`Classifier.feature_name` (e.g.
``qd-cnn-k32/dense``) names it in every table.

The stroke-aware variant takes extra input channels from ``rasterize.render.render(...,
channels=...)`` (stroke order, and time for raw drawings). It needs strokes, so it can judge
stroke models (Sketch-RNN) but not bitmap GANs; it is there to compare with the plain one.

A classifier is saved with everything needed to rasterize new drawings the way its training
data were (class names, size, line width, padding, channels) plus k and the seed, as plain
Python types, so ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rasterize.render import CHANNELS, render
from sketchgen.config import (
    BATCH_SIZES,
    EPOCHS,
    EVALUATOR_BATCH_SIZE,
    EVALUATOR_MAX_EPOCHS,
    EVALUATOR_PATIENCE,
    EVALUATOR_WIDTH,
    RATES,
    SEEDS,
    SIZES,
    WIDTHS,
    check_fields,
    check_model_size,
    setting,
)
from sketchgen.data.datasets import load_bitmaps, load_drawings, split_indices
from sketchgen.errors import FieldError
from sketchgen.runtime import atomic_write, choose_device, save_checkpoint

CHECKPOINT_FORMAT = "sketchgen.evaluation.classifier/1"
POOLINGS = 4  # conv + 2x2 max-pool blocks: k, 2k, 4k, 8k filters


@dataclass(frozen=True)
class ClassifierConfig:
    # k: filters k, 2k, 4k, 8k and 8k dense features (the reference: 12 to 75)
    width: int = setting(EVALUATOR_WIDTH, within=WIDTHS)
    # render channels, e.g. ("ink", "order"); () = plain bitmap
    channels: tuple[str, ...] = setting((), choices=CHANNELS)
    size: int = setting(28, within=SIZES)  # bitmap side in pixels; 28 = Google's numpy_bitmap
    # render settings (units of Google's 256-unit box): generated strokes must be drawn like
    # the training data, so both are stored with the weights
    line_width: float = setting(16.0, within="(0, 256]")
    padding: float = setting(16.0, within="[0, 256]")
    batch_size: int = setting(EVALUATOR_BATCH_SIZE, within=BATCH_SIZES)  # training batch
    learning_rate: float = setting(1e-3, within=RATES)  # Adam, as in the reference
    max_epochs: int = setting(EVALUATOR_MAX_EPOCHS, within=EPOCHS)  # early stopping ends sooner
    patience: int = setting(EVALUATOR_PATIENCE, within=EPOCHS)  # epochs without a lower valid loss
    seed: int = setting(0, within=SEEDS)  # weight initialisation, batch order, data split

    def __post_init__(self):
        check_fields(self)
        if self.size < 2**POOLINGS:
            raise FieldError("size", f"must be at least {2**POOLINGS} for {POOLINGS} poolings, "
                                     f"got {self.size}")
        check_model_size(lambda: [WidthKCNN(2, self.width, self.in_channels, self.size)],
                         "the classifier")
        object.__setattr__(self, "channels", tuple(self.channels))

    @property
    def in_channels(self) -> int:
        return max(1, len(self.channels))

    @property
    def feature_name(self) -> str:
        variant = "-" + "+".join(self.channels) if self.channels else ""
        return f"qd-cnn-k{self.width}{variant}/dense"

    def to_dict(self) -> dict:
        """Plain python types only, for a ``weights_only`` checkpoint."""
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, settings: dict) -> ClassifierConfig:
        return cls(**{**settings, "channels": tuple(settings["channels"])})


class WidthKCNN(nn.Module):
    """conv3x3(k) -> pool -> conv3x3(2k) -> pool -> conv3x3(4k) -> pool -> conv3x3(8k) -> pool
    -> dense(8k) -> logits. :meth:`embed` returns the dense layer's activations."""

    def __init__(self, num_classes: int, width: int, in_channels: int = 1, size: int = 28):
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, size
        for block in range(POOLINGS):
            out = width * 2**block
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = out, side // 2
        self.convolutions = nn.Sequential(*layers, nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(channels * side * side, 8 * width), nn.ReLU())
        self.logits = nn.Linear(8 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convolutions(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(x))


def _scaled(images: torch.Tensor) -> torch.Tensor:
    """uint8 bitmaps -> float in [0, 1], on whatever device they live."""
    return images.float() / 255.0


def as_input(images: np.ndarray, config: ClassifierConfig) -> torch.Tensor:
    """Check uint8 ``(N, H, W)`` / ``(N, C, H, W)`` images against the config; ``(N, C, H, W)``."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 bitmaps (the rasterizer's layout), got {images.dtype}")
    if images.ndim == 3 and not config.channels:
        images = images[:, None]
    expected = (config.in_channels, config.size, config.size)
    if images.ndim != 4 or images.shape[1:] != expected:
        side = f"{config.size}, {config.size}"
        layout = f"(N, {side})" if not config.channels else f"(N, {len(config.channels)}, {side})"
        raise ValueError(
            f"images of shape {images.shape} do not fit this classifier: expected {layout}"
            + (f" for channels {config.channels}" if config.channels else "")
        )
    return torch.from_numpy(np.ascontiguousarray(images))


@dataclass
class Classifier:
    model: WidthKCNN
    config: ClassifierConfig
    class_names: list[str]
    history: list[dict] = field(default_factory=list)  # one entry per epoch, see train_classifier
    best_epoch: int = 0  # the epoch whose weights were kept (lowest validation loss)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def feature_name(self) -> str:
        return self.config.feature_name

    @property
    def num_features(self) -> int:
        return 8 * self.config.width

    @torch.inference_mode()
    def _batched(self, images: np.ndarray, fn: Callable, batch_size: int) -> np.ndarray:
        inputs = as_input(images, self.config)
        self.model.eval()
        outputs = [fn(_scaled(batch.to(self.device))).cpu() for batch in inputs.split(batch_size)]
        return torch.cat(outputs).numpy()

    def logits(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        return self._batched(images, self.model, batch_size)

    def predict(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Predicted class index per image, int64."""
        return self.logits(images, batch_size).argmax(axis=1).astype(np.int64)

    def features(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """The feature extractor: dense-layer activations, float32 ``(N, 8k)``."""
        return self._batched(images, self.model.embed, batch_size)

    def render(self, drawings: Sequence) -> np.ndarray:
        """Rasterize drawings (e.g. generated strokes) exactly as the training data were."""
        return render(
            drawings,
            size=self.config.size,
            line_width=self.config.line_width,
            padding=self.config.padding,
            channels=self.config.channels or None,
        )

    def class_index(self, name: str) -> int:
        if name not in self.class_names:
            raise ValueError(f"{name!r} is not one of this classifier's classes {self.class_names}")
        return self.class_names.index(name)


# --- training -------------------------------------------------------------------------------


def build_model(config: ClassifierConfig, num_classes: int) -> WidthKCNN:
    """A freshly initialised network; the seed makes it the same one every time."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(config.seed)
        return WidthKCNN(num_classes, config.width, config.in_channels, config.size)


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
        logits = model(_scaled(images[batch]))
        loss_sum += F.cross_entropy(logits, labels[batch], reduction="sum")
        correct += (logits.argmax(dim=1) == labels[batch]).sum()
    return loss_sum.item() / len(images), correct.item() / len(images)


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    valid_images: np.ndarray,
    valid_labels: np.ndarray,
    class_names: Sequence[str],
    config: ClassifierConfig = ClassifierConfig(),
    device: str | torch.device = "auto",
    log: Callable[[dict], None] | None = None,
) -> Classifier:
    """Train with Adam and early stopping; returns the classifier at its best epoch.

    The data live on the device as uint8 for the whole run; batches are index slices of a
    permutation drawn from a ``torch.Generator`` seeded with ``config.seed``, so a CPU run is
    reproducible bit for bit. ``log`` receives each epoch's history entry:
    ``epoch``, ``train_loss``, ``valid_loss``, ``valid_accuracy``.
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
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batch_order = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best_loss, best_state, best_epoch = float("inf"), None, 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        for batch in torch.randperm(len(x_train), generator=batch_order).split(config.batch_size):
            batch = batch.to(device)
            loss = F.cross_entropy(model(_scaled(x_train[batch])), y_train[batch])
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
    return Classifier(model, config, class_names, history, best_epoch)


def training_images(
    sources: Sequence[str],
    config: ClassifierConfig,
    per_class: int | None = None,
    mirror: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real drawings of ``sources`` (categories or files) rasterized with ``config``'s settings.

    The plain variant uses the cached bitmaps of ``sketchgen.data.datasets.load_bitmaps``; the stroke
    variant renders simplified drawings, or raw ones when it needs the ``time`` channel.
    Returns ``(images, labels, class_names)``.
    """
    render_settings = {"line_width": config.line_width, "padding": config.padding}
    if not config.channels:
        data = load_bitmaps(
            sources, size=config.size, per_class=per_class, mirror=mirror, **render_settings
        )
        return data.bitmaps, data.labels, data.class_names
    fmt = "raw" if "time" in config.channels else "simplified"
    data = load_drawings(sources, fmt=fmt, per_class=per_class, mirror=mirror)
    images = render(data.drawings, size=config.size, channels=config.channels, **render_settings)
    return images, data.labels, data.class_names


def fit_and_evaluate(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    config: ClassifierConfig = ClassifierConfig(),
    device: str | torch.device = "auto",
    log: Callable[[dict], None] | None = None,
) -> tuple[Classifier, Evaluation]:
    """Split with ``sketchgen.data.datasets.split_indices`` (80/10/10, ``config.seed``), train on the
    first part with early stopping on the second, and evaluate on the held-out third."""
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
    )
    return classifier, evaluate(classifier, images[test], labels[test])


# --- saving ---------------------------------------------------------------------------------


def save_classifier(classifier: Classifier, path: str | Path) -> Path:
    """Weights and the settings they were trained under, written atomically."""
    return save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "settings": classifier.config.to_dict(),
            "class_names": list(classifier.class_names),
            "history": classifier.history,
            "best_epoch": classifier.best_epoch,
            "state_dict": {k: v.cpu() for k, v in classifier.model.state_dict().items()},
        },
        path,
    )


def load_classifier(path: str | Path, device: str | torch.device = "auto") -> Classifier:
    """A classifier saved by :func:`save_classifier` (read with ``weights_only=True``; its
    settings checked before the network is built, its weights' shapes after:
    ``sketchgen.training.checkpoints``, whose CheckpointError names the file)."""
    from sketchgen.training.checkpoints import check_state, read_classifier_checkpoint

    device = choose_device(device)
    checkpoint = read_classifier_checkpoint(path)
    config = ClassifierConfig.from_dict(checkpoint["settings"])
    model = build_model(config, len(checkpoint["class_names"]))
    check_state(model.state_dict(), checkpoint["state_dict"], "state_dict", Path(path))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    return Classifier(
        model, config, checkpoint["class_names"], checkpoint["history"], checkpoint["best_epoch"]
    )


def weights_sha256(classifier: Classifier) -> str:
    """sha256 of the weights (names, shapes, dtypes and values in order): which network this
    is, whatever file or device it came from."""
    digest = hashlib.sha256()
    for name, tensor in classifier.model.state_dict().items():
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{values.dtype}:{tuple(values.shape)}".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()


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


def plot_confusion(evaluation: Evaluation, path: str | Path, title: str | None = None) -> Path:
    """Row-normalised confusion matrix as an image (matplotlib's Agg backend, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rates = evaluation.rates()
    count = len(evaluation.class_names)
    side = max(4.0, 0.45 * count + 2.0)
    figure = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    figure.colorbar(shown, ax=axes, fraction=0.046, label="fraction of the true class")
    axes.set_xticks(range(count), evaluation.class_names, rotation=60, ha="right")
    axes.set_yticks(range(count), evaluation.class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if count <= 20:  # beyond that the numbers no longer fit the cells
        for (i, j), rate in np.ndenumerate(rates):
            colour = "white" if rate > 0.5 else "black"
            axes.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_title(title or f"accuracy {evaluation.accuracy:.3f} on {evaluation.n} drawings")
    figure.tight_layout()
    path = Path(path)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format=path.suffix[1:] or "png"))
