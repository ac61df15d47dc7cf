"""The Quick, Draw! classifier: evaluator (recognizability) and feature space (FID, KID, P/R).

Architecture: the width-k CNN family of the reference project (``../shared/reference``, the
Copenhagen "QuickDraw Data: large CNNs and GANs" slides, 72% on 50 categories with k = 12):
four 3x3 convolutions with k, 2k, 4k and 8k filters ("same" padding, ReLU), each followed by
2x2 max-pooling, then a dense layer of 8k ReLU units and a softmax over the categories.
Pooling floors odd sides as Keras does, so 28 px goes 28 -> 14 -> 7 -> 3 -> 1 exactly as in
the reference table; at larger sizes the last map (``size // 16`` per side after flooring) is
flattened into the dense layer. Training and checkpoints: ``sketchgen.evaluation.evaluator``.

Inception weights cannot be downloaded here and fit 28 px sketches poorly, so the dense
layer's 8k activations are the feature space; :attr:`Classifier.feature_name` (e.g.
``qd-cnn-k16/dense``) names it in every table.

The reference's double-descent runs add batch normalization after every convolution or an L2
penalty on the convolution kernels (``batch_norm``, ``l2``), and its fully connected baseline
is the same family without the convolutions (``architecture="mlp"``); all three are off by
default, and :meth:`ClassifierConfig.to_dict` leaves them out at their defaults, so the files
written before they existed (checkpoints, the default evaluator's cache key) stay valid.

The stroke-aware variant takes extra input channels from ``rasterize.render.render(...,
channels=...)`` (stroke order, and time for raw drawings). It needs strokes, so it can judge
stroke models (Sketch-RNN) but not bitmap GANs; it is there to compare with the plain one.

This module does no I/O: the config, the network and a trained network's use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING, GOOGLE_SIZE, ORIGINAL_SIDE
from rasterize.render import CHANNELS, render
from sketchgen.config import (
    BATCH_SIZES,
    EPOCHS,
    RATES,
    SEEDS,
    SIZES,
    WIDTHS,
    check_fields,
    check_model_size,
    setting,
)
from sketchgen.errors import FieldError

POOLINGS = 4  # conv + 2x2 max-pool blocks: k, 2k, 4k, 8k filters
# "cnn": the width-k CNN; "mlp": the reference's fully connected baseline (41% where the CNN
# got 72%), the same network without its convolution blocks: flatten -> dense(8k) -> logits
ARCHITECTURES = ("cnn", "mlp")
# Fields added after classifiers were saved and the default evaluator's cache was keyed:
# to_dict() leaves them out at their defaults, so those identities and files do not change.
LATER_FIELDS = ("architecture", "batch_norm", "l2")


@dataclass(frozen=True)
class ClassifierConfig:
    """The evaluator's settings, and the one home of its defaults: those of every committed
    report, of a comparison's ``[classifier]`` table and of the API's default evaluator."""

    # k: filters k, 2k, 4k, 8k and 8k dense features (the reference: 12 to 75); 16 gives 128
    # features, fewer than N, so the covariances are full rank
    width: int = setting(16, within=WIDTHS)
    # render channels, e.g. ("ink", "order"); () = plain bitmap
    channels: tuple[str, ...] = setting((), choices=CHANNELS)
    size: int = setting(GOOGLE_SIZE, within=SIZES)  # bitmap side in pixels; Google's numpy_bitmap
    # render settings (units of Google's 256-unit box): generated strokes must be drawn like
    # the training data, so both are stored with the weights
    line_width: float = setting(GOOGLE_LINE_WIDTH, within=f"(0, {ORIGINAL_SIDE:g}]")
    padding: float = setting(GOOGLE_PADDING, within=f"[0, {ORIGINAL_SIDE:g}]")
    batch_size: int = setting(128, within=BATCH_SIZES)  # images per Adam step
    learning_rate: float = setting(1e-3, within=RATES)  # Adam, as in the reference
    max_epochs: int = setting(15, within=EPOCHS)  # early stopping usually ends sooner
    patience: int = setting(2, within=EPOCHS)  # epochs without a lower valid loss before stopping
    seed: int = setting(0, within=SEEDS)  # weight initialisation, batch order, data split
    architecture: str = setting("cnn", choices=ARCHITECTURES)  # see ARCHITECTURES
    # batch normalization after every convolution's ReLU, before its pooling (the reference's
    # best double-descent variant; Keras's Conv2D(activation="relu"), then BatchNormalization)
    batch_norm: bool = False
    # Keras's kernel_regularizer=l2(...) on every convolution: l2 * sum(w**2) of the kernels
    # added to the loss (the reference's L2 variant settled on 1e-5); 0 = none
    l2: float = setting(0.0, within=(0, 1))

    def __post_init__(self):
        check_fields(self)
        if self.architecture == "cnn" and self.size < 2**POOLINGS:
            raise FieldError("size", f"must be at least {2**POOLINGS} for {POOLINGS} poolings, "
                                     f"got {self.size}")
        if self.architecture == "mlp" and (self.batch_norm or self.l2):
            raise FieldError("architecture", "'mlp' has no convolutions for batch_norm or l2 "
                                             "to act on")
        check_model_size(lambda: [_network(self, 2)], "the classifier")
        object.__setattr__(self, "channels", tuple(self.channels))

    @property
    def in_channels(self) -> int:
        return max(1, len(self.channels))

    @property
    def feature_name(self) -> str:
        """e.g. ``qd-cnn-k16/dense``; the network's variants (channels, batch norm) named."""
        variant = "-" + "+".join(self.channels) if self.channels else ""
        variant += "-bn" if self.batch_norm else ""
        return f"qd-{self.architecture}-k{self.width}{variant}/dense"

    def to_dict(self) -> dict:
        """Plain python types only, for a ``weights_only`` checkpoint; the fields of
        LATER_FIELDS only where they differ from their defaults."""
        defaults = {spec.name: spec.default for spec in fields(self)}
        return {key: list(value) if key == "channels" else value
                for key, value in asdict(self).items()
                if key not in LATER_FIELDS or value != defaults[key]}

    @classmethod
    def from_dict(cls, settings: dict) -> ClassifierConfig:
        return cls(**{**settings, "channels": tuple(settings["channels"])})


class WidthKCNN(nn.Module):
    """conv3x3(k) -> pool -> conv3x3(2k) -> pool -> conv3x3(4k) -> pool -> conv3x3(8k) -> pool
    -> dense(8k) -> logits. :meth:`embed` returns the dense layer's activations.

    ``batch_norm`` adds a BatchNorm2d after each convolution's ReLU (torch's momentum: with a
    few dozen steps an epoch, Keras's 0.99 would leave the running statistics epochs behind);
    ``blocks=0`` is the fully connected baseline (flatten -> dense -> logits)."""

    def __init__(self, num_classes: int, width: int, in_channels: int = 1,
                 size: int = GOOGLE_SIZE, batch_norm: bool = False, blocks: int = POOLINGS):
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, size
        for block in range(blocks):
            out = width * 2**block
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            layers += [nn.BatchNorm2d(out)] if batch_norm else []
            layers.append(nn.MaxPool2d(2))
            channels, side = out, side // 2
        self.convolutions = nn.Sequential(*layers, nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(channels * side * side, 8 * width), nn.ReLU())
        self.logits = nn.Linear(8 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convolutions(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(x))


def _network(config: ClassifierConfig, num_classes: int) -> WidthKCNN:
    blocks = POOLINGS if config.architecture == "cnn" else 0
    return WidthKCNN(num_classes, config.width, config.in_channels, config.size,
                     config.batch_norm, blocks)


def build_model(config: ClassifierConfig, num_classes: int) -> WidthKCNN:
    """A freshly initialised network; the seed makes it the same one every time."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(config.seed)
        return _network(config, num_classes)


def scaled(images: torch.Tensor) -> torch.Tensor:
    """uint8 bitmaps -> float in [0, 1], on whatever device they live: the network's input."""
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
    """A trained network with what it was trained on: classes, settings and history."""

    model: WidthKCNN
    config: ClassifierConfig
    class_names: list[str]
    history: list[dict] = field(default_factory=list)  # per epoch: evaluator.train_classifier
    best_epoch: int = 0  # the epoch whose weights were kept (lowest validation loss)
    # what it was trained on and how well it did (evaluator.train_classifier's keys: sources,
    # rows per class, seed, accuracies); {} for the files saved before manifests existed
    manifest: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sha256(self) -> str:
        """sha256 of the weights (names, shapes, dtypes and values in order): which network
        this is, whatever file or device it came from."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            values = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{values.dtype}:{tuple(values.shape)}".encode())
            digest.update(values.numpy().tobytes())
        return digest.hexdigest()

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
        outputs = [fn(scaled(batch.to(self.device))).cpu() for batch in inputs.split(batch_size)]
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

