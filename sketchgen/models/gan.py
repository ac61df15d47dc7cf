"""Bitmap GANs: DCGAN, conditional GAN, the reference projects' setups as presets, and SNGAN.

Every model is one :class:`GanConfig` (a registry entry in ``sketchgen.models.registry``) and is
trained by one :class:`GanTask`; a preset differs from another only in its config: the
architecture builder, the conditioning, the loss, label targets, optimizers and image scale.

Presets (sources in ``../shared/reference/``; "ref 000" = 000_d9519285d0731582.txt, etc.):

- ``superdeep`` (ref 000 and its public ``src/models.py``/``train.py``): G = 4 transposed
  convolutions 256-128-64-1 (4->8->14->28 px), batch norm + ReLU + dropout 0.2 on all but the
  last, sigmoid; D = 4 convolutions 64-128-256-512 with batch norm + LeakyReLU(0.2), flatten,
  Linear(512, 100), LeakyReLU, Linear(100, 1), sigmoid; BCE; Adam 1e-3, weight decay 1e-5
  (their train.py); images in [0, 1]. 28 px only: the 14 px padding trick fixes the size.
- ``tf-dcgan`` (ref 002, the TensorFlow DCGAN tutorial): Dense 100 -> 7*7*256 (no bias),
  BN, LeakyReLU, reshape, ConvT 5x5 128 stride 1, 64 stride 2, 1 stride 2 (tanh); D conv 5x5
  stride 2 64, 128, each LeakyReLU + dropout 0.3, flatten, dense 1; Adam 1e-3 (ref 002; the
  tutorial itself uses 1e-4); images in [-1, 1]. Keras defaults kept: LeakyReLU slope 0.3,
  batch-norm momentum 0.99 (0.01 in torch's convention), eps 1e-3.
- ``brownlee-cgan`` (ref 001 and 004, Brownlee's "conditional GAN from scratch"): label ->
  embedding(50) -> dense -> one extra 7x7 feature map in G and one extra 28x28 image channel
  in D; G dense 128*7*7 + LeakyReLU(0.2), ConvT 4x4/2 128, 128, conv 7x7 tanh; D conv 3x3/2
  128, 128, LeakyReLU(0.2), flatten, dropout 0.4, dense 1 (sigmoid); BCE; Adam 2e-4,
  beta1 0.5; D trained on a real and a fake half batch separately (two updates per step).
- ``smooth-cgan`` (ref 003): Brownlee's conditioning with the write-up's changes: strided
  convolutions, larger kernels in the top layers, batch norm, LeakyReLU(0.02), soft labels
  (real ~ U[0.7, 1.2], fake ~ U[0, 0.3]) and separate learning rates. The write-up gives no
  rates; we slow D (1e-4) against G (2e-4) because the references' common failure is a
  discriminator that overpowers the generator.

Our default, ``sngan``: the DCGAN backbone with a spectrally normalised projection
discriminator (Miyato et al. 2018; Miyato & Koyama 2018), hinge loss, one D step per G step
with Adam(2e-4, betas 0.5/0.999) (one of the settings of Miyato et al.'s robustness study;
on our short CPU runs it learned faster than SAGAN's 1e-4/4e-4 with betas 0/0.9), and an
exponential moving average of G's weights for sampling.
Why: every reference reports a discriminator that wins (D loss near 1e-14 in ref 001);
spectral norm bounds D's Lipschitz constant and the hinge loss does not saturate, so G keeps
getting gradients; projection is the conditioning that scales best with classes; EMA is a
free quality gain at sampling time. One D update per G update keeps it cheap on a CPU.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sketchgen import runtime
from sketchgen.config import (
    RATES,
    UNITS,
    WIDTHS,
    TrainConfig,
    check_fields,
    check_model_size,
    setting,
)
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models.task import TaskInputs

ARCHITECTURES = ("dcgan", "superdeep", "tf-dcgan", "brownlee", "smooth")
CONDITIONINGS = ("none", "concat", "projection")
LOSSES = ("bce", "hinge")
OUTPUTS = ("tanh", "sigmoid")
D_UPDATES = ("joint", "separate")
TARGETS = "[-1, 2]"  # D's label targets: around 0 and 1 (smooth-cgan's real ones reach 1.2)


@dataclass(frozen=True)
class GanConfig:
    """A GAN's architecture and training recipe. Defaults are the DCGAN paper's."""

    # generator/discriminator builder
    architecture: str = setting("dcgan", choices=ARCHITECTURES)
    # "none"; "concat": label embedding joins z in G and an extra label channel in D;
    # "projection": label embedding joins z in G, projection discriminator (dcgan only)
    conditioning: str = setting("none", choices=CONDITIONINGS)
    latent_dim: int = setting(100, within=UNITS)  # the size every reference uses
    width: int = setting(64, within=WIDTHS)  # base channel count of the dcgan builder (paper: 64)
    embed_dim: int = setting(50, within=UNITS)  # label embedding size (Brownlee: 50)
    # "bce": non-saturating GAN loss; "hinge": SNGAN/SAGAN hinge loss
    loss: str = setting("bce", choices=LOSSES)
    # D's targets for real and fake images, drawn ~ U[lo, hi]; soft labels stay near 0 and 1
    real_target: tuple[float, float] = setting((1.0, 1.0), within=TARGETS)
    fake_target: tuple[float, float] = setting((0.0, 0.0), within=TARGETS)
    lr_g: float = setting(2e-4, within=RATES)  # DCGAN paper
    lr_d: float = setting(2e-4, within=RATES)  # DCGAN paper
    # DCGAN paper: beta1 0.5 steadies training
    betas: tuple[float, float] = setting((0.5, 0.999), within="[0, 1)")
    adam_eps: float = setting(1e-8, within=RATES)  # torch default (Keras: 1e-7)
    weight_decay: float = setting(0.0, within="[0, 1]")  # L2 on both nets; superdeep used 1e-5
    # dropout in G (superdeep: "to combat mode collapse")
    g_dropout: float = setting(0.0, within="[0, 1)")
    # batch norm in the dcgan builder's G (DCGAN paper); off gives a G whose output does not
    # depend on the batch, e.g. to check data-parallel runs on CPUs, which lack SyncBatchNorm
    g_batch_norm: bool = True
    spectral_norm: bool = False  # spectral norm on every D layer, replacing D's batch norm
    # EMA of G's weights used for sampling; 0 = sample G itself
    ema_decay: float = setting(0.0, within="[0, 1)")
    # "tanh": data scaled to [-1, 1]; "sigmoid": to [0, 1]
    output: str = setting("tanh", choices=OUTPUTS)
    # "joint": one D step on real+fake; "separate": half batches
    d_update: str = setting("joint", choices=D_UPDATES)
    # batches of STANDING_BATCH noise draws that estimate G's batch-norm statistics before
    # sampling (see with_standing_statistics; 8 x 128: per-channel means to ~3% of a std);
    # 0 = sample with training's running averages, as Keras's predict() would
    standing_batches: int = setting(8, within=(0, 1_000))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.conditioning == "projection" and self.architecture != "dcgan":
            raise FieldError("conditioning", "'projection' needs architecture 'dcgan', got "
                                             f"{self.architecture!r}")
        for name in ("real_target", "fake_target"):
            low, high = getattr(self, name)
            if low > high:
                raise FieldError(name, f"must be (low, high) with low <= high, got {(low, high)}")
            object.__setattr__(self, name, (low, high))
        object.__setattr__(self, "betas", tuple(self.betas))

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    def check(self, config: TrainConfig) -> None:
        """Fail before any work if the architecture cannot produce ``config.size`` images."""
        if not size_supported(self.architecture, config.size):
            raise ConfigError(f"model {config.model!r} cannot make {config.size} px images; "
                              f"it supports {SIZE_RULES[self.architecture]}")
        real_batch = config.batch_size // 2 if self.d_update == "separate" else config.batch_size
        if real_batch < 1:
            raise ConfigError(f"batch_size {config.batch_size} leaves no real images per D "
                              f"update ({self.d_update} update)")
        runtime.check_shards(real_batch, f"batch_size {config.batch_size} (a {self.d_update} "
                                         f"D update's {real_batch} real images)")
        check_model_size(lambda: build_networks(self, config.size, max(1, len(config.categories))),
                         f"model {config.model!r} at {config.size} px")


SIZE_RULES = {
    "dcgan": "b * 2**k px with 4 <= b <= 7 and k >= 2 (16, 20, 24, 28, 32, 48, 56, 64, 128, ...)",
    "superdeep": "28 px only",
    "tf-dcgan": "multiples of 4 from 8 px (28, 32, 64, ...)",
    "brownlee": "multiples of 4 from 8 px (28, 32, 64, ...)",
    "smooth": "multiples of 4 from 8 px (28, 32, 64, ...)",
}


def dcgan_levels(size: int) -> tuple[int, int] | None:
    """(base, upsamplings) with size == base * 2**upsamplings, 4 <= base <= 7, >= 2 upsamplings."""
    upsamplings = 0
    while size % 2 == 0 and size > 7:
        size //= 2
        upsamplings += 1
    return (size, upsamplings) if 4 <= size <= 7 and upsamplings >= 2 else None


def size_supported(architecture: str, size: int) -> bool:
    if architecture == "dcgan":
        return dcgan_levels(size) is not None
    if architecture == "superdeep":
        return size == 28
    return size % 4 == 0 and size >= 8


# --- building blocks -----------------------------------------------------------------------


class LabelMap(nn.Module):
    """Label -> embedding -> dense -> one (side x side) map (Brownlee's conditioning)."""

    def __init__(self, num_classes: int, embed_dim: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.dense = nn.Linear(embed_dim, side * side)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.dense(self.embed(labels)).view(-1, 1, self.side, self.side)


class Generator(nn.Module):
    """``stem`` turns (z, labels) into a feature map, ``body`` into one image channel."""

    def __init__(self, stem: nn.Module, body: nn.Sequential, output: str) -> None:
        super().__init__()
        self.stem = stem
        self.body = body
        self.output = output

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        image = self.body(self.stem(z, labels))
        return torch.tanh(image) if self.output == "tanh" else torch.sigmoid(image)


class ConvStem(nn.Module):
    """z (+ label embedding) as a 1x1 map -> transposed conv to ``side`` x ``side`` (DCGAN)."""

    def __init__(self, in_dim: int, channels: int, side: int, num_classes: int,
                 embed_dim: int, post: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        full_dim = in_dim + (embed_dim if num_classes else 0)
        self.conv = nn.ConvTranspose2d(full_dim, channels, side, 1, 0, bias=False)
        self.post = post

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.post(self.conv(z[:, :, None, None]))


class DenseStem(nn.Module):
    """z -> dense -> (channels, side, side) (+ one label map as an extra feature map)."""

    def __init__(self, in_dim: int, channels: int, side: int, post: nn.Module,
                 label_map: LabelMap | None, bias: bool = True) -> None:
        super().__init__()
        self.channels, self.side = channels, side
        self.dense = nn.Linear(in_dim, channels * side * side, bias=bias)
        self.post = post
        self.label_map = label_map

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.post(self.dense(z)).view(-1, self.channels, self.side, self.side)
        if self.label_map is not None:
            features = torch.cat([features, self.label_map(labels)], dim=1)
        return features


class Discriminator(nn.Module):
    """``body`` maps an image (+ label channel) to a flat feature vector, ``head`` to a logit;
    a projection discriminator adds <embed(label), features>."""

    def __init__(self, body: nn.Sequential, head: nn.Module, label_map: LabelMap | None = None,
                 projection: nn.Embedding | None = None) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.label_map = label_map
        self.projection = projection

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_map is not None:
            images = torch.cat([images, self.label_map(labels)], dim=1)
        features = self.body(images)
        logits = self.head(features).squeeze(1)
        if self.projection is not None:
            logits = logits + (self.projection(labels) * features).sum(dim=1)
        return logits


def _keras_bn(channels: int, dims: int = 2) -> nn.Module:
    """Batch norm with Keras defaults (momentum 0.99 = torch 0.01, eps 1e-3) for Keras presets."""
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, eps=1e-3, momentum=0.01)


# --- architectures: (config, size, num_classes) -> (G, D) ---------------------------------


def build_dcgan(cfg: GanConfig, size: int, num_classes: int) -> tuple[Generator, Discriminator]:
    """Radford et al.: transposed convs 4x4/2 halving channels, BN + ReLU, tanh; D mirrors G
    with LeakyReLU(0.2) and BN (left out under spectral norm, which replaces it)."""
    base, upsamplings = dcgan_levels(size)
    classes = num_classes if cfg.conditional else 0
    top = cfg.width * 2 ** (upsamplings - 1)

    def g_block(channels: int) -> list[nn.Module]:
        norm = [nn.BatchNorm2d(channels)] if cfg.g_batch_norm else []
        return [*norm, nn.ReLU(), *_dropout(cfg.g_dropout)]

    stem = ConvStem(cfg.latent_dim, top, base, classes, cfg.embed_dim, nn.Sequential(*g_block(top)))
    layers: list[nn.Module] = []
    channels = top
    for _ in range(upsamplings - 1):
        layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                   *g_block(channels // 2)]
        channels //= 2
    layers.append(nn.ConvTranspose2d(channels, 1, 4, 2, 1))
    generator = Generator(stem, nn.Sequential(*layers), cfg.output)

    label_channel = cfg.conditioning == "concat"
    d_layers: list[nn.Module] = [nn.Conv2d(1 + label_channel, cfg.width, 4, 2, 1),
                                 nn.LeakyReLU(0.2)]
    channels = cfg.width
    for _ in range(upsamplings - 1):
        d_layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=cfg.spectral_norm),
                     *([] if cfg.spectral_norm else [nn.BatchNorm2d(channels * 2)]),
                     nn.LeakyReLU(0.2)]
        channels *= 2
    d_layers.append(nn.Flatten())
    features = channels * base * base
    discriminator = Discriminator(
        nn.Sequential(*d_layers), nn.Linear(features, 1),
        LabelMap(num_classes, cfg.embed_dim, size) if label_channel else None,
        nn.Embedding(num_classes, features) if cfg.conditioning == "projection" else None,
    )
    return generator, discriminator


def _dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def build_superdeep(cfg: GanConfig, size: int, num_classes: int
                    ) -> tuple[Generator, Discriminator]:
    """SuperDeepGenerator / SuperDeepConvDiscriminator (ref 000): 4->8->14->28 px."""
    ngf = ndf = cfg.width
    drop = _dropout(cfg.g_dropout)
    stem = ConvStem(cfg.latent_dim, ngf * 4, 4, 0, 0,
                    nn.Sequential(nn.BatchNorm2d(ngf * 4), nn.ReLU(), *drop))
    body = nn.Sequential(
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2), nn.ReLU(), *_dropout(cfg.g_dropout),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 2, bias=False),  # 8 -> 14 px
        nn.BatchNorm2d(ngf), nn.ReLU(), *_dropout(cfg.g_dropout),
        nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
    )
    d_layers: list[nn.Module] = []
    channels = 1
    for out, kernel, stride, pad in ((ndf, 4, 2, 1), (ndf * 2, 4, 2, 1), (ndf * 4, 4, 2, 1),
                                     (ndf * 8, 3, 1, 0)):  # 28 -> 14 -> 7 -> 3 -> 1 px
        d_layers += [nn.Conv2d(channels, out, kernel, stride, pad, bias=False),
                     nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
        channels = out
    d_layers.append(nn.Flatten())
    head = nn.Sequential(nn.Linear(ndf * 8, 100), nn.LeakyReLU(0.2), nn.Linear(100, 1))
    return Generator(stem, body, cfg.output), Discriminator(nn.Sequential(*d_layers), head)


def build_tf_dcgan(cfg: GanConfig, size: int, num_classes: int
                   ) -> tuple[Generator, Discriminator]:
    """The TensorFlow tutorial DCGAN (ref 002) at size = 4 * side (7 at 28 px)."""
    side = size // 4
    slope = 0.3  # Keras LeakyReLU default, which the tutorial uses
    stem = DenseStem(cfg.latent_dim, 256, side,
                     nn.Sequential(_keras_bn(256 * side * side, dims=1), nn.LeakyReLU(slope)),
                     None, bias=False)
    body = nn.Sequential(
        nn.ConvTranspose2d(256, 128, 5, 1, 2, bias=False), _keras_bn(128), nn.LeakyReLU(slope),
        nn.ConvTranspose2d(128, 64, 5, 2, 2, output_padding=1, bias=False), _keras_bn(64),
        nn.LeakyReLU(slope),
        nn.ConvTranspose2d(64, 1, 5, 2, 2, output_padding=1, bias=False),
    )
    d_body = nn.Sequential(
        nn.Conv2d(1, 64, 5, 2, 2), nn.LeakyReLU(slope), nn.Dropout(0.3),
        nn.Conv2d(64, 128, 5, 2, 2), nn.LeakyReLU(slope), nn.Dropout(0.3),
        nn.Flatten(),
    )
    return (Generator(stem, body, cfg.output),
            Discriminator(d_body, nn.Linear(128 * side * side, 1)))


def build_brownlee(cfg: GanConfig, size: int, num_classes: int
                   ) -> tuple[Generator, Discriminator]:
    """Brownlee's cGAN (refs 001, 004): label map as an extra feature map / image channel."""
    side = size // 4
    classes = num_classes if cfg.conditional else 0
    g_map = LabelMap(classes, cfg.embed_dim, side) if classes else None
    stem = DenseStem(cfg.latent_dim, 128, side, nn.LeakyReLU(0.2), g_map)
    body = nn.Sequential(
        nn.ConvTranspose2d(128 + bool(classes), 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(128, 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 1, 7, 1, 3),
    )
    d_map = LabelMap(classes, cfg.embed_dim, size) if classes else None
    d_body = nn.Sequential(
        nn.Conv2d(1 + bool(classes), 128, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 128, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Dropout(0.4),
    )
    return (Generator(stem, body, cfg.output),
            Discriminator(d_body, nn.Linear(128 * side * side, 1), d_map))


def build_smooth(cfg: GanConfig, size: int, num_classes: int
                 ) -> tuple[Generator, Discriminator]:
    """Ref 003's cGAN: Brownlee's conditioning, strided convs with large top kernels, batch
    norm, LeakyReLU(0.02)."""
    side = size // 4
    slope = 0.02  # ref 003: "best value is 0.02"
    classes = num_classes if cfg.conditional else 0
    g_map = LabelMap(classes, cfg.embed_dim, side) if classes else None
    stem = DenseStem(cfg.latent_dim, 256, side,
                     nn.Sequential(_keras_bn(256 * side * side, dims=1), nn.LeakyReLU(slope)),
                     g_map)
    body = nn.Sequential(
        nn.ConvTranspose2d(256 + bool(classes), 128, 4, 2, 1), _keras_bn(128),
        nn.LeakyReLU(slope),
        nn.ConvTranspose2d(128, 128, 4, 2, 1), _keras_bn(128), nn.LeakyReLU(slope),
        nn.Conv2d(128, 1, 7, 1, 3),  # large kernel at the top layer
    )
    d_map = LabelMap(classes, cfg.embed_dim, size) if classes else None
    d_body = nn.Sequential(
        nn.Conv2d(1 + bool(classes), 64, 5, 2, 2), nn.LeakyReLU(slope),  # large top kernel
        nn.Conv2d(64, 128, 5, 2, 2), _keras_bn(128), nn.LeakyReLU(slope),
        nn.Conv2d(128, 256, 3, 1, 1), _keras_bn(256), nn.LeakyReLU(slope),
        nn.Flatten(), nn.Dropout(0.4),
    )
    return (Generator(stem, body, cfg.output),
            Discriminator(d_body, nn.Linear(256 * side * side, 1), d_map))


BUILDERS = {
    "dcgan": build_dcgan,
    "superdeep": build_superdeep,
    "tf-dcgan": build_tf_dcgan,
    "brownlee": build_brownlee,
    "smooth": build_smooth,
}


def build_networks(cfg: GanConfig, size: int, num_classes: int
                   ) -> tuple[Generator, Discriminator]:
    """G and D for ``size`` px; spectral norm applied to every D layer if configured."""
    generator, discriminator = BUILDERS[cfg.architecture](cfg, size, num_classes)
    if cfg.spectral_norm:
        for module in list(discriminator.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.utils.parametrizations.spectral_norm(module)
    return generator, discriminator


# --- registry configs ----------------------------------------------------------------------

DCGAN = GanConfig()
CGAN = GanConfig(conditioning="concat")
SUPERDEEP = GanConfig(architecture="superdeep", output="sigmoid", lr_g=1e-3, lr_d=1e-3,
                      betas=(0.9, 0.999), weight_decay=1e-5, g_dropout=0.2)
TF_DCGAN = GanConfig(architecture="tf-dcgan", lr_g=1e-3, lr_d=1e-3, betas=(0.9, 0.999),
                     adam_eps=1e-7)
BROWNLEE_CGAN = GanConfig(architecture="brownlee", conditioning="concat", adam_eps=1e-7,
                          d_update="separate")
SMOOTH_CGAN = GanConfig(architecture="smooth", conditioning="concat", adam_eps=1e-7,
                        real_target=(0.7, 1.2), fake_target=(0.0, 0.3), lr_g=2e-4, lr_d=1e-4,
                        d_update="separate")
SNGAN = GanConfig(conditioning="projection", loss="hinge", spectral_norm=True, ema_decay=0.999)


# --- the training task ---------------------------------------------------------------------


def _to_unit(images: torch.Tensor, output: str) -> torch.Tensor:
    """uint8 [0, 255] -> float in G's output range."""
    images = images.float()
    return images / 127.5 - 1.0 if output == "tanh" else images / 255.0


def _to_uint8(images: torch.Tensor, output: str) -> torch.Tensor:
    """G's output range -> uint8 [0, 255], rounded."""
    scaled = (images + 1.0) * 127.5 if output == "tanh" else images * 255.0
    return scaled.round().clamp(0, 255).to(torch.uint8)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside (G's update backpropagates *through* D):
    saves D's weight-gradient work and keeps D's gradients those of D's own loss for the log."""
    params = [p for p in module.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


BatchNorm = nn.modules.batchnorm._BatchNorm  # every batch norm, SyncBatchNorm included
STANDING_BATCH = 128


class _LocalBatchNorm(BatchNorm):
    """A batch norm of any input rank that never synchronises: what a SyncBatchNorm becomes
    in the sampling copy, since only the main rank samples and a collective there would wait
    for ranks that never join."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass  # SyncBatchNorm served 1d and 2d inputs alike; so does this


def _without_sync(module: nn.Module) -> None:
    """Replace every SyncBatchNorm inside ``module`` by an equal local batch norm."""
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            local = _LocalBatchNorm(child.num_features, child.eps, child.momentum,
                                    child.affine, child.track_running_stats)
            local.load_state_dict(child.state_dict())
            setattr(module, name, local.to(child.running_mean.device))
        else:
            _without_sync(child)


@torch.no_grad()
def with_standing_statistics(generator: nn.Module, draw: Callable[[int], tuple],
                             batches: int) -> nn.Module:
    """A copy of ``generator`` in eval mode whose batch norms hold the population statistics
    of its *current* weights ("standing statistics", Brock et al. 2019), estimated over
    ``batches`` batches of ``draw(STANDING_BATCH)`` inputs; ``generator`` itself if it has
    no batch norm or ``batches`` is 0. Why: the running averages kept in training lag
    behind a G that is still changing fast (Keras's momentum 0.99 keeps 37% of the initial
    statistics after 100 steps), and samples drawn with them can be all background, while
    sampling in training mode would make every image depend on the others in its batch."""
    if batches == 0 or not any(isinstance(m, BatchNorm) for m in generator.modules()):
        return generator
    standing = copy.deepcopy(generator).eval()
    _without_sync(standing)
    for norm in (m for m in standing.modules() if isinstance(m, BatchNorm)):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
        norm.train()  # only the norms: dropout stays off, as when sampling
    for _ in range(batches):
        standing(*draw(STANDING_BATCH))
    return standing.eval()


class GanTask:
    """Trains one G/D pair by the recipe in its GanConfig (see ``sketchgen.training.harness.Task``).

    Sampling: from the EMA of G if configured, else G, in eval mode with standing batch-norm
    statistics (``with_standing_statistics``), estimated once per weights from a generator
    seeded by the run's seed (same weights, same samples).

    Randomness: batches, noise and targets come from the task's own CPU ``torch.Generator``
    (drawn on the CPU, moved to the device, as in Sketch-RNN's task), so a checkpoint's
    generator state is the same kind of state whatever device trained it: a run trained on
    CUDA samples on the CPU and resumes on another device.

    Data parallel under torchrun: every rank draws the global batch, noise and targets from
    its identically seeded generator and trains on its shard; gradients are averaged before
    each optimizer step (``sketchgen.runtime``). Batch norm becomes SyncBatchNorm on CUDA; on
    CPU (gloo) it normalises per shard, since torch's SyncBatchNorm is GPU-only.
    """

    supports_distributed = True

    def __init__(self, inputs: TaskInputs) -> None:
        self.config: TrainConfig = inputs.config
        self.cfg: GanConfig = inputs.model
        self.device = inputs.device
        self.data = inputs.data
        self.num_classes = len(inputs.class_names)
        self.conditional = self.cfg.conditional
        self.G, self.D = build_networks(self.cfg, self.config.size, self.num_classes)
        if runtime.world()[1] > 1 and self.device.type == "cuda":
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        self.G.to(self.device)
        self.D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval() if self.cfg.ema_decay > 0 else None
        self._sampler: nn.Module | None = None  # with standing statistics; reset by training
        self.run_G = runtime.maybe_compile(self.G, self.config, self.device)
        self.run_D = runtime.maybe_compile(self.D, self.config, self.device)
        adam = dict(betas=self.cfg.betas, eps=self.cfg.adam_eps,
                    weight_decay=self.cfg.weight_decay)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr_d, **adam)
        self.scaler_g = runtime.grad_scaler(self.config, self.device)
        self.scaler_d = runtime.grad_scaler(self.config, self.device)
        self.generator = torch.Generator().manual_seed(  # on the CPU: see the class docstring
            runtime.derived_seed(self.config.seed, "task"))

    # batches and noise, all drawn on the CPU from the task's generator: n is the global
    # count, the result this rank's shard (all of it on one process) on the device

    def _real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = runtime.shard(torch.randint(len(self.data.labels), (n,),
                                            generator=self.generator)).to(self.device)
        return _to_unit(self.data.images[index], self.cfg.output)[:, None], self.data.labels[index]

    def _noise(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.cfg.latent_dim, generator=self.generator)
        labels = torch.randint(self.num_classes, (n,), generator=self.generator)
        return runtime.shard(z).to(self.device), runtime.shard(labels).to(self.device)

    def _targets(self, shard_size: int, bounds: tuple[float, float]) -> torch.Tensor:
        low, high = bounds
        if low == high:
            return torch.full((shard_size,), low, device=self.device)
        count = shard_size * runtime.world()[1]
        uniform = torch.rand(count, generator=self.generator)
        return low + (high - low) * runtime.shard(uniform).to(self.device)

    # losses

    def _d_loss(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
        targets = self._targets(len(logits), self.cfg.real_target if real else self.cfg.fake_target)
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    def _g_loss(self, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return -logits.float().mean()
        return F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits.float()))

    def _d_score(self, logits: torch.Tensor) -> float:
        """Mean D output: a probability for BCE models, the raw critic value for hinge."""
        scores = logits.detach().float()
        return (torch.sigmoid(scores) if self.cfg.loss == "bce" else scores).mean().item()

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        runtime.average_gradients(p for group in optimizer.param_groups for p in group["params"])
        scaler.step(optimizer)
        scaler.update()

    # the Task protocol

    def train_step(self, step: int) -> dict[str, float]:
        self._sampler = None
        if self.cfg.d_update == "joint":
            return self._joint_step(step)
        return self._separate_step(step)

    def _joint_step(self, step: int) -> dict[str, float]:
        """One D update on a real and a fake batch, then one G update on the same fake batch
        against the updated D (the PyTorch DCGAN recipe; superdeep's and the TF tutorial's
        loops also reuse the batch): one G forward per step instead of two."""
        batch = self.config.batch_size
        real, real_labels = self._real_batch(batch)
        z, fake_labels = self._noise(batch)
        with runtime.autocast(self.config, self.device):
            fake = self.run_G(z, fake_labels)
            real_logits = self.run_D(real, real_labels)
            fake_logits = self.run_D(fake.detach(), fake_labels)
            loss_d = self._d_loss(real_logits, True) + self._d_loss(fake_logits, False)
        self._step(loss_d, self.opt_d, self.scaler_d)
        with runtime.autocast(self.config, self.device), _frozen(self.D):
            loss_g = self._g_loss(self.run_D(fake, fake_labels))
        self._step(loss_g, self.opt_g, self.scaler_g)
        return self._finish_step(step, loss_d, loss_g, real_logits, fake_logits)

    def _separate_step(self, step: int) -> dict[str, float]:
        """Brownlee's loop (also ref 003): D updated on a real half batch, then on a fake half
        batch; then G on a full batch of fresh noise and random labels."""
        half = self.config.batch_size // 2
        autocast = runtime.autocast(self.config, self.device)
        real, real_labels = self._real_batch(half)
        with autocast:
            real_logits = self.run_D(real, real_labels)
            loss_real = self._d_loss(real_logits, True)
        self._step(loss_real, self.opt_d, self.scaler_d)
        z, fake_labels = self._noise(half)
        with autocast:
            with torch.no_grad():
                fake = self.run_G(z, fake_labels)
            fake_logits = self.run_D(fake, fake_labels)
            loss_fake = self._d_loss(fake_logits, False)
        self._step(loss_fake, self.opt_d, self.scaler_d)
        z, labels = self._noise(self.config.batch_size)
        with autocast, _frozen(self.D):
            loss_g = self._g_loss(self.run_D(self.run_G(z, labels), labels))
        self._step(loss_g, self.opt_g, self.scaler_g)
        return self._finish_step(step, loss_real + loss_fake, loss_g, real_logits, fake_logits)

    def _finish_step(self, step: int, loss_d: torch.Tensor, loss_g: torch.Tensor,
                     real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]:
        if self.G_ema is not None:
            self._update_ema(step)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                "d_real": self._d_score(real_logits), "d_fake": self._d_score(fake_logits)}

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # Warm-up (as TF's ExponentialMovingAverage with num_updates): early on the average
        # follows G closely instead of being stuck near the random initial weights.
        decay = min(self.cfg.ema_decay, (1.0 + step) / (10.0 + step))
        for ema_param, param in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            ema_param.lerp_(param, 1.0 - decay)
        for ema_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            ema_buffer.copy_(buffer)  # batch-norm statistics are copied, not averaged

    def grad_norms(self) -> dict[str, float]:
        named = [(f"{prefix}.{name}", p.grad) for prefix, module in (("G", self.G), ("D", self.D))
                 for name, p in module.named_parameters() if p.grad is not None]
        if not named:
            return {}
        norms = torch.stack([grad.norm() for _, grad in named]).tolist()
        return {name: norm for (name, _), norm in zip(named, norms, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        state = {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "generator": self.generator.get_state(),
        }
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.generator.set_state(state["generator"].cpu())
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self._sampler = None

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.cfg.latent_dim, generator=generator).to(self.device)
        sampler = self._standing_sampler()
        with runtime.eval_mode(sampler):
            images = sampler(z, labels.to(self.device))
        return _to_uint8(images.float(), self.cfg.output)[:, 0].cpu()

    def _standing_sampler(self) -> nn.Module:
        if self._sampler is None:
            draws = torch.Generator().manual_seed(
                runtime.derived_seed(self.config.seed, "standing statistics"))

            def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
                z = torch.randn(n, self.cfg.latent_dim, generator=draws)
                labels = torch.randint(self.num_classes, (n,), generator=draws)
                return z.to(self.device), labels.to(self.device)

            sampler = self.G_ema if self.G_ema is not None else self.G
            self._sampler = with_standing_statistics(sampler, draw, self.cfg.standing_batches)
        return self._sampler


def build_gan_task(inputs: TaskInputs) -> GanTask:
    """The registry factory for every GAN entry."""
    return GanTask(inputs)
